"""Figures of the benchmark: log-AIE heatmaps as the paper's Figure 2, and T→T vs S→T differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from known_speech.plotting import pyplot, save_figure
from known_speech.tracing.plot import KIND_COLORMAPS

from .aggregate import Estimate
from .categories import CATEGORIES

__all__ = ["plot_aie_heatmaps", "plot_difference"]

_KIND_TITLES = {"hidden": "hidden state", "mlp": "MLP", "attn": "attention"}
LOG_FLOOR = 1e-4  # AIE at or below this is drawn as the floor on the log scale


def _layer_ticks(axis, layers: int) -> None:
    ticks = np.arange(0, layers, max(1, layers // 8))
    axis.set_xticks(ticks + 0.5)
    axis.set_xticklabels(ticks, fontsize=7)
    axis.set_xlabel("layer", fontsize=8)


def plot_aie_heatmaps(panels: list[tuple[str, dict[str, Estimate], int]], path: str | Path) -> Path:
    """One row per run (label, estimates per kind, prompts), one column per kind; log10 of AIE."""
    plt = pyplot()
    kinds = [kind for kind in ("hidden", "mlp", "attn") if any(kind in estimates for _, estimates, _ in panels)]
    figure, axes = plt.subplots(len(panels), len(kinds), figsize=(4.2 * len(kinds), 2.3 * len(panels) + 0.4),
                                squeeze=False, dpi=150)
    for row, (label, estimates, count) in enumerate(panels):
        for column, kind in enumerate(kinds):
            axis = axes[row][column]
            if kind not in estimates:
                axis.set_axis_off()
                continue
            table = np.log10(np.clip(estimates[kind].mean, LOG_FLOOR, None))
            image = axis.pcolormesh(np.ma.masked_invalid(table), cmap=KIND_COLORMAPS[kind])
            axis.invert_yaxis()
            axis.set_yticks(np.arange(len(CATEGORIES)) + 0.5)
            axis.set_yticklabels(CATEGORIES if column == 0 else [], fontsize=7)
            _layer_ticks(axis, table.shape[1])
            axis.set_title(f"{label}: {_KIND_TITLES[kind]} (n={count})", fontsize=8)
            figure.colorbar(image, ax=axis).ax.set_title("log10 AIE", fontsize=6)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_difference(label: str, estimates: dict[str, Estimate], count: int, path: str | Path) -> Path:
    """AIE(S→T) - AIE(T→T) per kind; dots mark cells whose 95 % interval excludes zero."""
    plt = pyplot()
    kinds = list(estimates)
    figure, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 2.7), squeeze=False, dpi=150)
    for axis, kind in zip(axes[0], kinds):
        estimate = estimates[kind]
        limit = float(np.nanmax(np.abs(estimate.mean))) or 1e-6
        image = axis.pcolormesh(np.ma.masked_invalid(estimate.mean), cmap="RdBu_r", vmin=-limit, vmax=limit)
        rows, columns = np.nonzero(estimate.excludes_zero())
        axis.scatter(columns + 0.5, rows + 0.5, s=3, c="black")
        axis.invert_yaxis()
        axis.set_yticks(np.arange(len(CATEGORIES)) + 0.5)
        axis.set_yticklabels(CATEGORIES if axis is axes[0][0] else [], fontsize=7)
        _layer_ticks(axis, estimate.mean.shape[1])
        axis.set_title(f"{_KIND_TITLES[kind]}: S→T − T→T (n={count})", fontsize=8)
        figure.colorbar(image, ax=axis).ax.set_title("ΔAIE", fontsize=6)
    figure.suptitle(label, fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)
