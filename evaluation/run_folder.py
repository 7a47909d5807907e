"""A trace run's folder: its layout, its settings, its traced items and its summary, in one place.

    run.json             the settings and the calibrated noise level (a resumed run must match them)
    items/<id>.npz       TraceResult with the subject corrupted
    control/<id>.npz     TraceResult with a non-subject span of the same number of text tokens corrupted
    failed/<id>.json     why an item could not be traced (the run goes on)
    summary.json         counts and timings, written when every rank is done

The runner writes it; aggregation and reports read it; neither needs the other.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from known_speech.atomic import atomic_write_text
from known_speech.tracing import TraceResult

from .model_input import PositionMap
from .run_config import TraceRunConfig
from .setting_differences import setting_differences

__all__ = ["RunFolder", "RunSettings", "TraceRunSummary", "Span", "position_map"]

Span = Literal["items", "control"]


@dataclass(frozen=True)
class RunSettings:
    """run.json: the config, the noise level calibrated for it, and what ran it."""

    config: TraceRunConfig
    noise_std: float
    adapter_class: str = ""
    torch_dtype: str = ""
    calibrated_on: int = 0  # how many items the noise level was calibrated on (the whole selection)
    calibration_digest: str = ""  # which items: a resumed run with another selection is refused
    provenance: dict = field(default_factory=dict)  # Adapter.describe(): model, revision, quantisation, versions
    created: str = ""  # when the run started (UTC)

    def to_json(self) -> str:
        return json.dumps({"config": self.config.to_dict(), **{k: v for k, v in asdict(self).items() if k != "config"}},
                          indent=2)

    @classmethod
    def from_json(cls, text: str) -> "RunSettings":
        data = json.loads(text)
        known = {f.name for f in fields(cls)} - {"config"}
        return cls(TraceRunConfig.from_dict(data["config"]), **{k: v for k, v in data.items() if k in known})


@dataclass
class TraceRunSummary:
    run_dir: str
    items: int
    traced: int
    failed: int
    seconds: float
    world_size: int
    per_rank_seconds: list[float] = field(default_factory=list)
    noise_std: float = 0.0
    # the tracing loop alone, per rank: what more GPUs divide (start-up, preparation and calibration they do not)
    per_rank_trace_seconds: list[float] = field(default_factory=list)


def position_map(result: TraceResult) -> PositionMap:
    """The typed position map a traced item was saved with."""
    return PositionMap.from_dict(result.metadata["positions"])


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def of(cls, config: TraceRunConfig, out: str | Path) -> "RunFolder":
        return cls(config.run_dir(out))

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- settings -------------------------------------------------------------------------------------
    @property
    def settings_file(self) -> Path:
        return self.path / "run.json"

    def settings(self) -> RunSettings:
        if not self.settings_file.exists():
            raise ValueError(f"{self.path} is not a trace run folder (no run.json)")
        return RunSettings.from_json(self.settings_file.read_text(encoding="utf-8"))

    def write_settings(self, settings: RunSettings) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.settings_file, settings.to_json())

    def resume(self, config: TraceRunConfig) -> RunSettings | None:
        """The saved settings of a run to resume, or None for a new one; refused if they differ (but for
        `limit` and `known_ids`, which choose among the selection: the noise level stays that of the whole selection)."""
        if not self.settings_file.exists():
            return None
        saved = self.settings()
        differing = setting_differences(saved.config.to_dict(), config.to_dict(), ignore=("limit", "known_ids"))
        if differing:
            raise ValueError(f"{self.path} holds a run with other settings ({differing}); use another --out")
        return saved

    def check_model(self, saved: RunSettings, provenance: dict) -> None:
        """A resumed run must trace the model its items were traced with (a retrained delta has the same name)."""
        differing = setting_differences(saved.provenance, provenance) if saved.provenance else ""
        if differing:
            raise ValueError(f"{self.path} holds a run of another build of {saved.config.model} ({differing}); "
                             "use another --out")

    # -- items ----------------------------------------------------------------------------------------
    def item_file(self, known_id: int, span: Span = "items") -> Path:
        return self.path / span / f"{known_id}.npz"

    def failure_file(self, known_id: int) -> Path:
        return self.path / "failed" / f"{known_id}.json"

    def make_dirs(self) -> None:
        for folder in ("items", "control", "failed"):
            (self.path / folder).mkdir(parents=True, exist_ok=True)

    def finished(self, known_id: int, control: bool, retry_failed: bool) -> bool:
        """Nothing left to trace for this item (a control span it has no room for is found out later)."""
        if self.failure_file(known_id).exists() and not retry_failed:
            return True
        return self.item_file(known_id).exists() and (not control or self.item_file(known_id, "control").exists())

    def item_ids(self, span: Span = "items") -> list[int]:
        return sorted(int(path.stem) for path in (self.path / span).glob("*.npz"))

    def load(self, known_id: int, span: Span = "items") -> TraceResult:
        path = self.item_file(known_id, span)
        try:
            return TraceResult.load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable trace result ({type(err).__name__}: {err}); delete it and run "
                             f"the trace again to redo this item") from None

    def record_failure(self, known_id: int, reason: str) -> None:
        atomic_write_text(self.failure_file(known_id), json.dumps({"known_id": known_id, "reason": reason}))

    def clear_failure(self, known_id: int) -> None:
        self.failure_file(known_id).unlink(missing_ok=True)

    def failures(self) -> int:
        return len(list((self.path / "failed").glob("*.json")))

    def write_summary(self, summary: TraceRunSummary) -> None:
        atomic_write_text(self.path / "summary.json", json.dumps(asdict(summary), indent=2))
