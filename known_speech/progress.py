"""Progress bars on a terminal only, unless asked for: a log file or CI output stays readable.

Our bars pass `disable=bars_disabled()`; `datasets`, `huggingface_hub` and `transformers` draw their own, switched off
here for output that is not a terminal: by the CLI at start, and by the library's loaders (`follow_terminal`) when
used from Python. `configure_progress(force=True)` shows them all."""

from __future__ import annotations

import sys

__all__ = ["bars_disabled", "configure_progress", "follow_terminal"]

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
