"""Progress bars on a terminal only, unless asked for: a log file or CI output stays readable.

Our bars pass `disable=bars_disabled()`; `datasets`, `huggingface_hub` and `transformers` draw their own, switched off
here for output that is not a terminal."""

from __future__ import annotations

import sys

__all__ = ["bars_disabled", "configure_progress"]

_forced = False


def bars_disabled() -> bool | None:
    """tqdm's `disable`: None hides the bar where the output is no terminal; False shows it anyway."""
    return False if _forced else None


def configure_progress(force: bool = False) -> None:
    """Show every bar (`force`), or none of the libraries' where stderr is not a terminal."""
    global _forced
    _forced = force
    if force or sys.stderr.isatty():
        return
    import datasets
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    datasets.disable_progress_bars()
    disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights"
