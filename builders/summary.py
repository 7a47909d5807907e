"""What a build did: counts, the failures with their stage and reason, ASR and alignment QC."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from known_speech.source import KnownRecord

from .cache import ItemOutcome

__all__ = ["BuildSummary", "ItemFailure", "AlignmentQCStats", "summarise"]


@dataclass(frozen=True)
class ItemFailure:
    known_id: int
    stage: str | None
    reason: str


@dataclass(frozen=True)
class AlignmentQCStats:
    """One estimated-alignment method over the build, against the exact alignment."""

    items: int
    median_boundary_error_ms: float
    p95_boundary_error_ms: float
    median_subject_iou: float
    flagged: int


@dataclass
class BuildSummary:
    voice_config: str
    items: int = 0
    built: int = 0
    reused: int = 0
    failed: int = 0
    total_audio_s: float = 0.0
    mean_wer: float | None = None
    subject_recognition_rate: float | None = None
    seconds: float = 0.0
    engine_version: str | None = None
    rebuilt: dict[str, int] = field(default_factory=dict)  # items built again, by what changed
    failures: list[ItemFailure] = field(default_factory=list)
    alignment_qc: dict[str, AlignmentQCStats] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        ok = self.items - self.failed
        wer = f"{self.mean_wer:.3f}" if self.mean_wer is not None else "n/a"
        rate = f"{self.subject_recognition_rate:.1%}" if self.subject_recognition_rate is not None else "n/a"
        why = ", ".join(f"{count} for {part}" for part, count in sorted(self.rebuilt.items()))
        return (
            f"{self.voice_config}: {ok}/{self.items} items ok ({self.built} built now"
            f"{' (rebuilt: ' + why + ')' if why else ''}, {self.reused} reused), "
            f"{self.failed} failed; audio {self.total_audio_s / 60:.1f} min; mean WER {wer}; "
            f"subject recognised {rate}; {self.seconds:.0f} s"
        )


def summarise(voice_config: str, records: list[KnownRecord], outcomes: dict[int, ItemOutcome | None],
              built: int) -> BuildSummary:
    """The summary of `records` from their outcomes (None: never built)."""
    summary = BuildSummary(voice_config, items=len(records), built=built, reused=len(records) - built)
    wers, recognised = [], []
    estimates: dict[str, list[dict]] = {}
    for record in records:
        outcome = outcomes[record.known_id]
        if outcome is not None and outcome.engine_version and summary.engine_version is None:
            summary.engine_version = outcome.engine_version
        if outcome is None or outcome.status != "ok":
            summary.failed += 1
            summary.failures.append(ItemFailure(record.known_id, outcome.stage if outcome else None,
                                                outcome.reason if outcome else "not built"))
            continue
        row = outcome.row
        summary.engine_version = summary.engine_version or row["voice"]["engine_version"]
        summary.total_audio_s += row["duration_s"]
        wers.append(row["asr"]["wer"])
        recognised.append(row["asr"]["subject_recognised"])
        for estimate in row.get("estimated_alignments") or []:
            estimates.setdefault(estimate["method"], []).append(estimate)
    if wers:
        summary.mean_wer = float(np.mean(wers))
        summary.subject_recognition_rate = float(np.mean(recognised))
    for method, rows in estimates.items():
        errors = np.array([e["mean_boundary_error_ms"] for e in rows])
        summary.alignment_qc[method] = AlignmentQCStats(
            len(rows), float(np.median(errors)), float(np.percentile(errors, 95)),
            float(np.median([e["subject_iou"] for e in rows])), int(sum(e["flagged"] for e in rows)))
    return summary
