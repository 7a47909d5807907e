"""The TTS engine interface: spoken form in, audio plus (where the engine knows them) word times out."""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from known_speech.spoken import SpokenForm

__all__ = ["Synthesis", "TTSEngine", "VoiceInfo", "ENGINES", "register_engine", "create_engine"]


@dataclass(frozen=True)
class VoiceInfo:
    """What produced the audio; stored in every row."""

    engine: str
    voice: str
    speaker: str | None = None
    speed: float = 1.0
    engine_version: str | None = None
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Synthesis:
    samples: np.ndarray  # (n,) float32 mono in [-1, 1]
    sample_rate: int
    # [start_s, end_s) per spoken word, from the synthesiser's own durations; None if unknown
    word_times_s: list[tuple[float, float]] | None = None
    # per spoken word, how much of its phonemisation was found in the utterance's (0..1)
    word_scores: list[float] | None = None
    # the seed the engine's sampling noise was drawn with; None where the engine cannot be seeded per item
    # (Piper's ONNX graph draws from one generator per session) or draws none (espeak-ng, external audio)
    seed: int | None = None
    # (phoneme, start_s, end_s) of every phoneme the engine voiced, pauses included as "_"; None if unknown
    phonemes: list[tuple[str, float, float]] | None = None


class TTSEngine(Protocol):
    info: VoiceInfo

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis: ...


# name -> "module:Class", imported only when used (engines are optional extras)
ENGINES: dict[str, str] = {
    "piper": "known_speech.builders.tts.piper:PiperEngine",
    "piper-subprocess": "known_speech.builders.tts.subprocess_engine:PiperSubprocessEngine",
    "melotts": "known_speech.builders.tts.subprocess_engine:MeloTTSEngine",
    "kokoro": "known_speech.builders.tts.kokoro:KokoroEngine",
    "espeak-ng": "known_speech.builders.tts.espeak:EspeakEngine",
    "external": "known_speech.builders.tts.external:ExternalEngine",
}


def register_engine(name: str, target: str) -> None:
    """Register an engine class as "package.module:Class" under `name`."""
    ENGINES[name] = target


def create_engine(name: str, voice: str | None = None, **options) -> TTSEngine:
    if name not in ENGINES:
        raise ValueError(f"engine={name!r} is not known; choose one of {sorted(ENGINES)}")
    module_name, class_name = ENGINES[name].split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(voice=voice, **options) if voice is not None else engine_class(**options)
