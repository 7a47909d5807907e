"""Speech units as a speech LM reads them: de-duplication, provenance, and Spirit LM's token order.

SpiritLM and TWIST feed the LM mHuBERT-base 25 Hz layer-11 units, de-duplicated: consecutive repeats
collapse to one LM position, so a subject's frame span must be mapped to de-duplicated positions before
it can be corrupted. Which network produced the units decides what they mean, so every stored unit
sequence carries its provenance, and a model refuses units of another tokenizer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "TEXT_MARKER",
    "SPEECH_MARKER",
    "MHUBERT_LAYER",
    "MHUBERT_RATE_HZ",
    "SPIRITLM_HUBERT_RATE_HZ",
    "SPIRITLM_PITCH_RATE_HZ",
    "SPIRITLM_STYLE_RATE_HZ",
    "UnitProvenance",
    "SpeechToken",
    "deduplicate",
    "dedup_span",
    "interleave_expressive",
]

# Spirit LM's modality markers (spiritlm/model/spiritlm_model.py, _build_prompt)
TEXT_MARKER, SPEECH_MARKER = "[Text]", "[Speech]"
# SpiritLM / TWIST units: mHuBERT-base 25 Hz (converted on the Hub as slprl/mhubert-base-25hz), layer 11
MHUBERT_LAYER = 11
MHUBERT_RATE_HZ = 25.0
# the rates Spirit LM's tokenizer orders its tokens by (spiritlm/speech_tokenizer/spiritlm_tokenizer.py:155-163):
# HuBERT at 24.99 (not 25) so that a HuBERT frame sorts after a pitch frame of the same nominal time
SPIRITLM_HUBERT_RATE_HZ = 24.99
SPIRITLM_PITCH_RATE_HZ = 12.5
SPIRITLM_STYLE_RATE_HZ = 1.0


@dataclass(frozen=True)
class UnitProvenance:
    """What made a unit sequence: the tokenizer's name, a hash of the weights that decide the units (HuBERT
    up to `layer` and the quantizer, by content, so a fairseq .pt and its transformers conversion agree),
    and the quantizer's kind ("linear": Spirit LM's learned network; "kmeans": nearest centroid)."""

    tokenizer: str
    checkpoint_sha256: str
    quantizer: str
    layer: int
    rate_hz: float

    def to_dict(self) -> dict:
        return asdict(self)

    def same_units_as(self, other: "UnitProvenance") -> bool:
        return (self.checkpoint_sha256, self.quantizer, self.layer) == (other.checkpoint_sha256, other.quantizer, other.layer)


@dataclass(frozen=True)
class SpeechToken:
    """One LM position of an interleaved speech prompt: "Hu", "Pi" or "St", its unit, and the frame
    index in its own stream (HuBERT frames for "Hu")."""

    stream: str
    unit: int
    frame: int

    @property
    def text(self) -> str:
        return f"[{self.stream}{self.unit}]"


def deduplicate(units: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(de-duplicated units, frame index where each run starts)."""
    units = np.asarray(units)
    if units.size == 0:
        return units.copy(), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], units[1:] != units[:-1]]))
    return units[starts], starts


def dedup_span(run_starts: np.ndarray, frame_start: int, frame_end: int, num_frames: int) -> tuple[int, int]:
    """[start, end) of the de-duplicated positions whose frame runs overlap frames [frame_start, frame_end)."""
    if frame_end <= frame_start:
        raise ValueError(f"empty frame span [{frame_start}, {frame_end})")
    run_ends = np.append(run_starts[1:], num_frames)
    overlapping = np.flatnonzero((run_starts < frame_end) & (run_ends > frame_start))
    if overlapping.size == 0:
        raise ValueError(f"frame span [{frame_start}, {frame_end}) lies outside the {num_frames} frames")
    return int(overlapping[0]), int(overlapping[-1]) + 1


def _timed(stream: str, units, rate_hz: float, dedup: bool) -> list[tuple[float, SpeechToken]]:
    """(time, token) of each frame, keeping the first frame of each run when `dedup`."""
    timed, previous = [], None
    for frame, unit in enumerate(int(u) for u in units):
        if not dedup or unit != previous:
            timed.append((frame / rate_hz, SpeechToken(stream, unit, frame)))
        previous = unit
    return timed


def interleave_expressive(hubert, pitch=None, style=None) -> list[SpeechToken]:
    """Spirit LM's token order: style (1 Hz, every frame), pitch (12.5 Hz, de-duplicated) and HuBERT
    (24.99 Hz, de-duplicated) merged by time, style before pitch before HuBERT at equal times (a stable
    sort of the streams in that order, spiritlm_tokenizer.py:56-70). Without pitch and style it is the
    base model's de-duplicated HuBERT sequence."""
    timed = []
    if style is not None:
        timed += _timed("St", style, SPIRITLM_STYLE_RATE_HZ, dedup=False)
    if pitch is not None:
        timed += _timed("Pi", pitch, SPIRITLM_PITCH_RATE_HZ, dedup=True)
    timed += _timed("Hu", hubert, SPIRITLM_HUBERT_RATE_HZ, dedup=True)
    return [token for _, token in sorted(timed, key=lambda item: item[0])]
