"""Per-item build cache: one FLAC and one JSON per known_id, so an interrupted build resumes.

The JSON is written last and is the commit marker: an item counts as done only when its JSON
exists, and its audio is rewritten only when what made it changed (resumed builds are byte-identical).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from known_speech.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["ItemOutcome", "ItemCache"]


@dataclass
class ItemOutcome:
    """One item's build result; failures keep the stage and the reason."""

    known_id: int
    status: Literal["ok", "failed"]
    row: dict | None = None  # the record without audio bytes
    stage: str | None = None  # where it failed: verbalise, synthesis, alignment, asr
    reason: str | None = None
    seconds: float = 0.0
    engine_version: str | None = None  # of the engine that made (or failed to make) it
    fingerprint: dict | None = None  # what it was made from (builders.fingerprint)


class ItemCache:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _json(self, known_id: int) -> Path:
        return self.directory / f"{known_id}.json"

    def audio_path(self, known_id: int) -> Path:
        return self.directory / f"{known_id}.flac"

    def get(self, known_id: int) -> ItemOutcome | None:
        path = self._json(known_id)
        if not path.exists():
            return None
        return ItemOutcome(**json.loads(path.read_text(encoding="utf-8")))

    def put(self, outcome: ItemOutcome, audio: bytes | None) -> None:
        # an uncommitted FLAC (no JSON yet) came from an interrupted attempt: replace it, since
        # the row being committed describes this audio
        if audio is not None:
            atomic_write_bytes(self.audio_path(outcome.known_id), audio)
        atomic_write_text(self._json(outcome.known_id), json.dumps(asdict(outcome), ensure_ascii=False))

    def audio(self, known_id: int) -> bytes:
        return self.audio_path(known_id).read_bytes()
