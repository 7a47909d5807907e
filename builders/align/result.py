"""An item's alignments as the row stores them: the one its words use, and the estimates beside it."""

from __future__ import annotations

from dataclasses import dataclass, field

from known_speech.spans import AlignedWord

from .qc import AlignmentQC

__all__ = ["Alignment", "EstimatedAlignment", "AlignmentResult"]


@dataclass(frozen=True)
class Alignment:
    """How the row's `words` were timed: `tts` (the synthesiser's own durations), or an estimate."""

    method: str
    model: str
    mean_score: float
    error_ms_vs_tts: float | None

    def to_dict(self) -> dict:
        return {"method": self.method, "model": self.model, "mean_score": self.mean_score,
                "error_ms_vs_tts": self.error_ms_vs_tts}


@dataclass(frozen=True)
class EstimatedAlignment:
    """An estimated alignment and its QC against the exact one."""

    method: str
    model: str
    words: list[AlignedWord]
    qc: AlignmentQC

    def to_dict(self) -> dict:
        return {"method": self.method, "model": self.model, "words": [w.to_dict() for w in self.words],
                **self.qc.to_dict()}


@dataclass(frozen=True)
class AlignmentResult:
    words: list[AlignedWord]
    alignment: Alignment
    estimated: list[EstimatedAlignment] = field(default_factory=list)
