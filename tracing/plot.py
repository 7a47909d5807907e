"""Per-prompt heatmaps in the style of ROME's causal-trace figures (tokens x layers)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from known_speech.plotting import pyplot, save_figure

from .metric import metric_label

if TYPE_CHECKING:  # TraceResult.plot imports this module: a runtime import back would be a circle
    from .result import Kind, TraceResult

__all__ = ["plot_trace", "KIND_COLORMAPS"]

KIND_COLORMAPS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}
_KIND_TITLES = {"hidden": "hidden state", "mlp": "MLP output", "attn": "attention output"}


def plot_trace(result: TraceResult, path: str | Path | None = None, kinds: tuple[Kind, ...] | None = None):
    """PNG, PDF or SVG (by suffix) with one panel per kind, subject tokens starred; the figure without a path."""
    plt = pyplot()
    kinds = kinds or tuple(result.scores)
    start, end = result.subject_range
    labels = [f"{token!r}*" if start <= i < end else repr(token) for i, token in enumerate(result.tokens)]
    height = max(2.5, 0.28 * len(labels) + 1.2)
    figure, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds) + 1.0, height), squeeze=False, dpi=150)
    for axis, kind in zip(axes[0], kinds):
        table = np.ma.masked_invalid(result.scores[kind])
        image = axis.pcolor(table, cmap=KIND_COLORMAPS[kind], vmin=result.low_score)
        axis.invert_yaxis()
        axis.set_yticks(np.arange(len(labels)) + 0.5)
        axis.set_yticklabels(labels, fontsize=7)
        layers = table.shape[1]
        ticks = np.arange(0, layers, max(1, layers // 6))
        axis.set_xticks(ticks + 0.5)
        axis.set_xticklabels(ticks)
        window = f" (window {result.options.window})" if kind != "hidden" else ""
        axis.set_title(f"Restoring {_KIND_TITLES[kind]}{window}", fontsize=8)
        axis.set_xlabel("layer")
        colorbar = figure.colorbar(image, ax=axis)
        colorbar.set_label(metric_label(result.options.metric, result.answer.strip() or str(result.answer_id)), fontsize=7)  # beside the bar: no title to collide with
    figure.suptitle(
        f"{result.model_name}: clean {result.high_score:.3f}, corrupted {result.low_score:.3f}, "
        f"σ={result.noise_std:.3g}, {result.options.samples} samples",
        fontsize=8,
    )
    figure.tight_layout()
    return save_figure(figure, path) if path is not None else figure
