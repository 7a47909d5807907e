"""An item's alignments over its spectrogram, as the paper's Figure 3: one row per alignment method,
then one per speech tokenizer with the subject's frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from known_speech.audio import TARGET_SAMPLE_RATE
from known_speech.plotting import pyplot, save_figure

__all__ = ["plot_alignment", "alignment_figure"]

_SUBJECT_COLORS = ("gold", "cyan", "lime", "magenta", "orange")
_LABEL_STYLES = ((0, 7), (0, 6), (90, 7), (90, 6), (0, 5), (90, 5))  # (rotation, font size) tried in turn until one fits
_LABEL_PAD_PX = 2  # kept clear on each side of a label, so that neighbours never touch


def _subject_bounds(words: list[dict], subject_start: int, subject_end: int) -> tuple[float, float] | None:
    subject = [w for w in words if w["char_start"] < subject_end and subject_start < w["char_end"]]
    return (min(w["start_s"] for w in subject), max(w["end_s"] for w in subject)) if subject else None


def _place_labels(figure, axis, words: list[dict]) -> None:
    """Each word centred in its box, in the first of `_LABEL_STYLES` that fits it with a gap on either side;
    the last (smallest, upright) where none does (a word of a few ms)."""
    renderer = figure.canvas.get_renderer()
    for word in words:
        left, right = (axis.transData.transform((x, 0))[0] for x in (word["start_s"], word["end_s"]))
        height = axis.get_window_extent(renderer).height
        text = axis.text((word["start_s"] + word["end_s"]) / 2, 0.5, word["word"], ha="center", va="center")
        for rotation, size in _LABEL_STYLES:
            text.set_rotation(rotation)
            text.set_fontsize(size)
            box = text.get_window_extent(renderer)
            if box.width + 2 * _LABEL_PAD_PX <= right - left and box.height + 2 * _LABEL_PAD_PX <= height:
                break


def plot_alignment(row: dict, samples: np.ndarray, path: str | Path) -> Path:
    """`alignment_figure` as PNG, PDF or SVG (by suffix)."""
    return save_figure(alignment_figure(row, samples), path)


def alignment_figure(row: dict, samples: np.ndarray):
    """The spectrogram (dB) with each alignment's subject bounds, then the row's `words` (its alignment method)
    and each estimated one, each word labelled inside its box, then the subject's frames of each speech tokenizer."""
    plt = pyplot()
    methods = [(row["alignment"]["method"], row["words"])]
    methods += [(f"{e['method']} (IoU {e['subject_iou']:.2f}{', flagged' if e['flagged'] else ''})", e["words"])
                for e in row.get("estimated_alignments") or []]
    token_spans = row.get("speech_token_spans") or []
    subject_start, subject_end = row["subject_char_span"]
    duration = len(samples) / TARGET_SAMPLE_RATE
    rows = 1 + len(methods) + len(token_spans)
    figure, axes = plt.subplots(rows, 1, sharex=True, dpi=150,
                                figsize=(max(7.0, 2.4 * duration), 2.0 + 0.75 * (rows - 1)),
                                gridspec_kw={"height_ratios": [3] + [1] * (rows - 1)})
    _, _, _, image = axes[0].specgram(samples, NFFT=400, Fs=TARGET_SAMPLE_RATE, noverlap=240, cmap="magma",
                                      scale="dB", mode="psd")
    colorbar = figure.colorbar(image, cax=axes[0].inset_axes([1.01, 0.0, 0.012, 1.0]))
    colorbar.set_label("power (dB/Hz)", fontsize=7)
    colorbar.ax.tick_params(labelsize=6)
    axes[0].set_ylabel("Hz")
    axes[0].set_title(f"known_id {row['known_id']}: {row['prompt']!r} (subject {row['subject']!r})", fontsize=8)
    for (label, words), axis, color in zip(methods, axes[1:], _SUBJECT_COLORS):
        bounds = _subject_bounds(words, subject_start, subject_end)
        if bounds:
            axis.axvspan(*bounds, color=color, alpha=0.35)
            for edge in bounds:
                axes[0].axvline(edge, color=color, lw=1.0, label=f"subject, {label.split(' (')[0]}" if edge == bounds[0] else None)
        for word in words:
            axis.axvline(word["start_s"], color="black", lw=0.6)
            axis.axvline(word["end_s"], color="grey", lw=0.4, ls=":")
        axis.set_ylim(0, 1)
        axis.set_yticks([])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    for span, axis in zip(token_spans, axes[1 + len(methods):]):
        rate, start, end = span["rate_hz"], span["frame_start"], span["frame_end"]
        axis.axvspan(start / rate, end / rate, color="tab:blue", alpha=0.3)
        axis.vlines(np.arange(start, end + 1) / rate, 0, 1, color="tab:blue", lw=0.5)
        axis.text(end / rate, 0.5, f"  frames {start}–{end - 1}", va="center", fontsize=6)
        axis.set_ylim(0, 1)
        axis.set_yticks([])
        axis.set_ylabel(f"{span['tokenizer']}\n({rate:g} Hz frames)", rotation=0, ha="right", va="center", fontsize=7)
    axes[0].legend(loc="upper right", fontsize=6, framealpha=0.8)
    axes[-1].set_xlabel("seconds")
    axes[-1].set_xlim(0, duration)
    figure.tight_layout()
    for (_, words), axis in zip(methods, axes[1:]):
        _place_labels(figure, axis, words)  # after the layout: label sizes are final
    return figure
