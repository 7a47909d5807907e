"""The benchmark's figures in the paper's panel layout: rows hidden / MLP / attention, one column per run
(T→T, S→T per voice) and one per paired difference (S→T − T→T on the prompts both recall); AIE on the
log scale of the paper's Figure 2, or signed on a diverging scale."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from known_speech.plotting import pyplot, save_figure
from known_speech.tracing.plot import KIND_COLORMAPS

from .aggregate import Estimate

__all__ = ["Panel", "panel_figure", "plot_panels", "LOG_FLOOR", "KIND_TITLES", "VECTOR_FORMATS"]

KIND_TITLES = {"hidden": "hidden state", "mlp": "MLP", "attn": "attention"}
LOG_FLOOR = 1e-4  # AIE at or below this (negative included) is drawn at the floor on the log scale
VECTOR_FORMATS = (".pdf", ".svg")
ABSENT_COLOR = "#d9d9d9"
TITLE_WIDTH = 48  # characters a panel title line holds at its font size before it reaches the next panel
Scale = Literal["log", "signed"]


@dataclass
class Panel:
    """One column of the layout: a run's (or a paired difference's) estimates per kind, and what it shows."""

    title: str
    estimates: dict[str, Estimate]
    n: int  # prompts behind it (a category row may have fewer: its n is drawn beside it)
    categories: tuple[str, ...]
    difference: bool = False  # a paired difference: always signed, its own scale
    intervals: bool = True  # mark cells whose 95 % interval excludes 0 (only where n allows an interval)


def _layer_ticks(axis, layers: int) -> None:
    ticks = np.arange(0, layers, max(1, layers // 8))
    axis.set_xticks(ticks + 0.5)
    axis.set_xticklabels(ticks, fontsize=7)
    axis.set_xlabel("layer", fontsize=8)


def _row_limit(panels: list[Panel], kind: str, scale: Scale) -> tuple[float, float]:
    """One colour scale per row for the runs' columns, so T→T and S→T compare by colour."""
    values = [np.abs(p.estimates[kind].mean) if scale == "signed" else p.estimates[kind].mean
              for p in panels if kind in p.estimates and not p.difference]
    top = max((float(np.nanmax(v)) for v in values if np.isfinite(v).any()), default=0.0)
    if scale == "log":
        return np.log10(LOG_FLOOR), np.log10(max(top, LOG_FLOOR * 10))
    top = top or 1e-6
    return -top, top


def _row_counts(axis, estimate: Estimate) -> None:
    """n beside each row, on the panel's right: the prompts that have a token of that category."""
    counts = np.max(estimate.n.reshape(len(estimate.n), -1), axis=1)
    right = axis.secondary_yaxis("right")
    right.set_ticks(np.arange(len(counts)) + 0.5, [f"n={int(n)}" for n in counts], fontsize=6)
    right.tick_params(length=0, pad=1)


def _hatch_negative(axis, mean: np.ndarray) -> None:
    """Cells whose AIE is negative, drawn at the log scale's floor, hatched so that they do not pass for ~0."""
    from matplotlib.patches import Rectangle

    for row, column in zip(*np.nonzero(mean < 0)):
        axis.add_patch(Rectangle((column, row), 1, 1, fill=False, hatch="////", edgecolor="#555555", lw=0))


def panel_figure(panels: list[Panel], kinds: list[str], scale: Scale, value_label: str):
    """Rows: kinds; columns: panels; n per category row beside each panel; on the log scale, negative cells hatched."""
    plt = pyplot()
    figure, axes = plt.subplots(len(kinds), len(panels), figsize=(3.9 * len(panels) + 1.4, 2.3 * len(kinds) + 0.3),
                                squeeze=False, dpi=150)
    for row, kind in enumerate(kinds):
        row_scale = _row_limit(panels, kind, scale)
        for column, panel in enumerate(panels):
            axis = axes[row][column]
            if kind not in panel.estimates:  # said, not left blank: this run did not trace this kind
                axis.set_axis_off()
                axis.text(0.5, 0.5, textwrap.fill(f"{KIND_TITLES[kind]}: not traced in {panel.title}", TITLE_WIDTH),
                          ha="center", va="center", fontsize=8, color="0.4", transform=axis.transAxes)
                continue
            estimate = panel.estimates[kind]
            if panel.difference:
                limit = float(np.nanmax(np.abs(estimate.mean))) if np.isfinite(estimate.mean).any() else 0.0
                table, (low, high), cmap, label = estimate.mean, (-(limit or 1e-6), limit or 1e-6), "RdBu_r", f"Δ {value_label}"
            elif scale == "signed":
                table, (low, high), cmap, label = estimate.mean, row_scale, "RdBu_r", value_label
            else:
                table = np.log10(np.clip(estimate.mean, LOG_FLOOR, None))
                (low, high), cmap, label = row_scale, KIND_COLORMAPS[kind], f"log10 {value_label}"
            axis.set_facecolor(ABSENT_COLOR)  # masked cells: no prompt has a token of that category
            image = axis.pcolormesh(np.ma.masked_invalid(table), cmap=cmap, vmin=low, vmax=high)
            if scale == "log" and not panel.difference:
                _hatch_negative(axis, estimate.mean)
            if panel.difference and panel.intervals:
                rows, columns = np.nonzero(estimate.excludes_zero())
                axis.scatter(columns + 0.5, rows + 0.5, s=3, c="black")
            axis.invert_yaxis()
            axis.set_yticks(np.arange(len(panel.categories)) + 0.5)
            axis.set_yticklabels(panel.categories if column == 0 or panel.categories != panels[0].categories else [],
                                 fontsize=7)
            _row_counts(axis, estimate)
            _layer_ticks(axis, table.shape[1])
            title = f"{KIND_TITLES[kind]}: {panel.title} ({panel.n} prompts)"
            axis.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=8)  # long run labels would run into the next panel
            colorbar = figure.colorbar(image, ax=axis, pad=0.12)
            colorbar.set_label(label, fontsize=7)
            colorbar.ax.tick_params(labelsize=6)
    figure.tight_layout()
    return figure


def plot_panels(panels: list[Panel], kinds: list[str], scale: Scale, value_label: str, path: str | Path) -> Path:
    """`panel_figure` written as PNG with PDF and SVG beside it."""
    return save_figure(panel_figure(panels, kinds, scale, value_label), path, also=VECTOR_FORMATS)
