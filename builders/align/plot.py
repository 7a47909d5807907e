"""An item's alignments over its spectrogram, as the paper's Figure 3: one row per alignment method."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from known_speech.audio import TARGET_SAMPLE_RATE
from known_speech.plotting import pyplot, save_figure

__all__ = ["plot_alignment"]


def plot_alignment(row: dict, samples: np.ndarray, path: str | Path) -> Path:
    """PNG/PDF: spectrogram on top, then the row's `words` (its alignment method) and each estimated one,
    word boundaries as lines, the subject shaded."""
    plt = pyplot()
    methods = [(row["alignment"]["method"], row["words"])]
    methods += [(f"{e['method']} (IoU {e['subject_iou']:.2f}{', flagged' if e['flagged'] else ''})", e["words"])
                for e in row.get("estimated_alignments") or []]
    subject_start, subject_end = row["subject_char_span"]
    duration = len(samples) / TARGET_SAMPLE_RATE
    figure, axes = plt.subplots(1 + len(methods), 1, sharex=True, dpi=150,
                                figsize=(max(6.0, 2.2 * duration), 1.8 + 0.7 * len(methods)),
                                gridspec_kw={"height_ratios": [3] + [1] * len(methods)})
    axes[0].specgram(samples, NFFT=400, Fs=TARGET_SAMPLE_RATE, noverlap=240, cmap="magma")
    axes[0].set_ylabel("Hz")
    axes[0].set_title(f"known_id {row['known_id']}: {row['prompt']!r} (subject {row['subject']!r})", fontsize=8)
    for axis, (label, words) in zip(axes[1:], methods):
        subject = [w for w in words if w["char_start"] < subject_end and subject_start < w["char_end"]]
        if subject:
            axis.axvspan(min(w["start_s"] for w in subject), max(w["end_s"] for w in subject), color="gold", alpha=0.5)
            axes[0].axvline(min(w["start_s"] for w in subject), color="gold", lw=0.8)
            axes[0].axvline(max(w["end_s"] for w in subject), color="gold", lw=0.8)
        for word in words:
            axis.axvline(word["start_s"], color="black", lw=0.6)
            axis.axvline(word["end_s"], color="grey", lw=0.4, ls=":")
            axis.text((word["start_s"] + word["end_s"]) / 2, 0.5, word["word"], ha="center", va="center", fontsize=7)
        axis.set_yticks([])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    axes[-1].set_xlabel("seconds")
    axes[-1].set_xlim(0, duration)
    figure.tight_layout()
    return save_figure(figure, path)
