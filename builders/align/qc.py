"""Alignment QC: how far an estimated alignment is from the synthesiser's exact one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from known_speech.spans import AlignedWord, time_span_of_chars

__all__ = ["AlignmentQC", "compare_alignments", "span_iou", "FLAG_BELOW_IOU"]

# an estimated subject span overlapping the exact one by less than this is flagged
FLAG_BELOW_IOU = 0.5


def span_iou(first: tuple[float, float], second: tuple[float, float]) -> float:
    overlap = max(0.0, min(first[1], second[1]) - max(first[0], second[0]))
    union = max(first[1], second[1]) - min(first[0], second[0])
    return overlap / union if union > 0 else 0.0


@dataclass(frozen=True)
class AlignmentQC:
    mean_boundary_error_ms: float
    max_boundary_error_ms: float
    subject_iou: float
    flagged: bool

    def to_dict(self) -> dict:
        return asdict(self)


def compare_alignments(
    exact: Sequence[AlignedWord], estimated: Sequence[AlignedWord], subject_chars: tuple[int, int]
) -> AlignmentQC:
    """Word boundaries (starts and ends) of the same written words, and the subject span's IoU."""
    if [w.char_start for w in exact] != [w.char_start for w in estimated]:
        raise ValueError("the two alignments do not cover the same written words")
    errors = np.abs(np.array([[w.start_s, w.end_s] for w in exact]) - np.array([[w.start_s, w.end_s] for w in estimated]))
    iou = span_iou(time_span_of_chars(exact, *subject_chars), time_span_of_chars(estimated, *subject_chars))
    return AlignmentQC(float(errors.mean() * 1000), float(errors.max() * 1000), float(iou), iou < FLAG_BELOW_IOU)
