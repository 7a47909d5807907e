"""Span arithmetic between characters, seconds and speech-token frames. Spans are [start, end)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "AlignedWord",
    "TokenSpan",
    "frame_span",
    "time_span_of_chars",
    "SPEECH_TOKENIZER_RATES",
]

# Frame rates of the speech tokenizers whose spans every record carries (paper, App. A):
# mHuBERT-base 25 Hz (SpiritLM, TWIST) and HuBERT-base 50 Hz units.
SPEECH_TOKENIZER_RATES: dict[str, float] = {"hubert-25hz": 25.0, "hubert-50hz": 50.0}


@dataclass(frozen=True)
class AlignedWord:
    """A written word of the prompt with its time in the audio (seconds) and a confidence."""

    word: str
    char_start: int
    char_end: int
    start_s: float
    end_s: float
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TokenSpan:
    """A subject span in a speech tokenizer's frames; units, their de-duplicated span and what made them
    (known_speech.units.UnitProvenance) where a unit tokenizer ran."""

    tokenizer: str
    rate_hz: float
    frame_start: int
    frame_end: int
    units: tuple[int, ...] | None = None
    dedup_start: int | None = None
    dedup_end: int | None = None
    units_tokenizer: str | None = None
    units_checkpoint_sha256: str | None = None
    units_quantizer: str | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "units": list(self.units) if self.units is not None else None}


def frame_span(start_s: float, end_s: float, rate_hz: float) -> tuple[int, int]:
    """Frames covering [start_s, end_s) at `rate_hz`: floor(s*rate), ceil(e*rate) (paper, App. A)."""
    if end_s < start_s:
        raise ValueError(f"end_s={end_s} is before start_s={start_s}")
    # round away float noise first so that 0.2 s at 25 Hz is frame 5, not 4.999...
    return math.floor(round(start_s * rate_hz, 9)), math.ceil(round(end_s * rate_hz, 9))


def time_span_of_chars(words: Sequence[AlignedWord], char_start: int, char_end: int) -> tuple[float, float]:
    """Start of the first and end of the last aligned word overlapping [char_start, char_end)."""
    covering = [w for w in words if w.char_start < char_end and char_start < w.char_end]
    if not covering:
        raise ValueError(f"no aligned word overlaps characters [{char_start}, {char_end})")
    return min(w.start_s for w in covering), max(w.end_s for w in covering)


