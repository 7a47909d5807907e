"""Progress bars on a terminal only, unless asked for: a log file or CI output stays readable.

Our bars pass `disable=bars_disabled()`; `datasets`, `huggingface_hub` and `transformers` draw their own, switched off
here for output that is not a terminal: by the CLI at start, and by the library's loaders (`follow_terminal`) when
used from Python. `configure_progress(force=True)` shows them all. Where there is no bar, `progress` logs a line at
least every 30 s instead (items done, rate, time left), so a long command in a log file or CI still shows it moving."""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

__all__ = ["bars_disabled", "configure_progress", "follow_terminal", "progress", "LOG_EVERY_S"]

logger = logging.getLogger(__name__)

LOG_EVERY_S = 30.0

_forced = False
_configured = False


def bars_disabled() -> bool | None:
    """tqdm's `disable`: None hides the bar where the output is no terminal; False shows it anyway."""
    return False if _forced else None


def configure_progress(force: bool = False) -> None:
    """Show every bar (`force`), or none of the libraries' where stderr is not a terminal."""
    global _forced, _configured
    _forced, _configured = force, True
    if force or sys.stderr.isatty():
        return
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    try:
        import datasets
    except ImportError:  # a GPU host that trains spirit-smollm2 on the staged package has no `datasets`
        pass
    else:
        datasets.disable_progress_bars()
    disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights"


def follow_terminal() -> None:
    """The rule where the library loads models or data outside the CLI (the Python API): applied once, and
    not at all where the CLI or the caller already chose with `configure_progress`."""
    if not _configured:
        configure_progress()


class progress(tqdm):
    """tqdm's bar on a terminal (or with `--progress`); elsewhere a log line on `known_speech.progress` at least every
    `log_every` seconds of work: "filter smollm2 (text): 120/1209 items, 2.1 items/s, 8 min 39 s left"."""

    def __init__(self, iterable=None, *args, log_every: float = LOG_EVERY_S, **kwargs):
        kwargs.setdefault("disable", bars_disabled())
        self._desc, self._unit = kwargs.get("desc") or "", kwargs.get("unit", "it")  # a disabled tqdm keeps neither
        super().__init__(iterable, *args, **kwargs)
        self._log_every, self._started = log_every, time.monotonic()
        self._logged_at, self._done = self._started, 0

    def __iter__(self):
        if not self.disable:
            yield from super().__iter__()
            return
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: float | None = 1):
        if not self.disable:
            return super().update(n)
        self._done += n or 0
        now = time.monotonic()
        if now - self._logged_at >= self._log_every:
            self._logged_at = now
            logger.info("%s", self.describe_progress(now))
        return None

    def describe_progress(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self._started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        total = self.total if self.total is not None else "?"
        line = f"{self._desc}: {self._done:g}/{total} {self._unit}s, {rate:.2f} {self._unit}s/s"
        if rate and self.total:
            left = max(self.total - self._done, 0) / rate
            line += f", {int(left // 60)} min {int(left % 60)} s left"
        return line
