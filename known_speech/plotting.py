"""Matplotlib without a display, and figures written where asked (PNG, PDF or SVG by suffix)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """matplotlib.pyplot on the Agg backend: figures are files here, never windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | Path, also: tuple[str, ...] = ()) -> Path:
    """Write `path` (its suffix picks the format) and the same figure in each format of `also` beside it
    (a paper wants ".pdf" or ".svg")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target in (path, *(path.with_suffix(suffix) for suffix in also)):
        figure.savefig(target, bbox_inches="tight")
    pyplot().close(figure)
    return path
