"""What a committed item was made from, so a rebuild redoes exactly the items whose inputs changed.

Each part is hashed on its own, so the build can say why an item is rebuilt: its source record, its
spoken form, the voice, the ASR model, the aligners, the unit tokenizer's weights, or the stages' code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from known_speech.source import KnownRecord
from known_speech.spoken import verbalise

from .options import BuildOptions

__all__ = ["STAGES_VERSION", "ItemInputs", "item_fingerprint", "changed_parts"]

# bump when a stage makes a different row from the same inputs
STAGES_VERSION = 4  # 4: rows hold the synthesiser's phoneme times
# bump an engine's when it makes different rows from the same inputs (its items alone are made again)
ENGINE_REVISIONS = {"espeak-ng": 1}  # 1: word and phoneme times from its C library's events, not Whisper's


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _files_digest(path: str | Path) -> str:
    """Content hash of a file, or of the weight and config files of a folder (a voice, a unit tokenizer)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in (".onnx", ".json", ".pt", ".npy", ".bin",
                                                                        ".safetensors", ".model"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ItemInputs:
    """The parts of the options every item shares, hashed once per build."""

    voice: str
    asr_model: str
    aligners: str
    unit_tokenizer: str
    stages: str

    @classmethod
    def of(cls, options: BuildOptions) -> "ItemInputs":
        voice_file = Path(options.voice)
        voice = [options.engine, options.voice, _files_digest(voice_file) if voice_file.exists() else ""]
        if ENGINE_REVISIONS.get(options.engine):  # an engine whose rows changed: its items are made again
            voice.append(ENGINE_REVISIONS[options.engine])
        aligners = [sorted(options.aligners), options.ctc_model if "ctc" in options.aligners else ""]
        units = _files_digest(options.unit_tokenizer) if options.unit_tokenizer else ""
        return cls(_digest(voice), _digest(options.asr_model), _digest(aligners), units,
                   _digest(STAGES_VERSION))


def item_fingerprint(record: KnownRecord, inputs: ItemInputs) -> dict[str, str]:
    return {"record": _digest(record.to_dict()), "spoken_form": _digest(verbalise(record.prompt).reading), "voice": inputs.voice,
            "asr_model": inputs.asr_model, "aligners": inputs.aligners, "unit_tokenizer": inputs.unit_tokenizer,
            "stages": inputs.stages}


def changed_parts(saved: dict | None, current: dict[str, str]) -> list[str]:
    """Which parts differ; an item committed without a fingerprint differs in all of them."""
    if not saved:
        return ["fingerprint"]
    return [part for part, value in current.items() if saved.get(part) != value]
