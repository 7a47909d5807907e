"""Kokoro-82M through `kokoro-onnx` (voices by name: af_sarah, am_adam, bf_emma, ...)."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from known_speech.spoken import SpokenForm

from .base import Synthesis, VoiceInfo

__all__ = ["KokoroEngine", "kokoro_files"]

DEFAULT_FOLDER = Path.home() / ".cache" / "known-speech" / "kokoro"


def kokoro_files() -> tuple[Path, Path]:
    """kokoro-v1.0.onnx and voices-v1.0.bin (from the kokoro-onnx releases): $KOKORO_MODEL / $KOKORO_VOICES,
    else ~/.cache/known-speech/kokoro/."""
    model = Path(os.environ.get("KOKORO_MODEL", DEFAULT_FOLDER / "kokoro-v1.0.onnx"))
    voices = Path(os.environ.get("KOKORO_VOICES", DEFAULT_FOLDER / "voices-v1.0.bin"))
    for path in (model, voices):
        if not path.is_file():
            raise ValueError(f"{path} is missing: download kokoro-v1.0.onnx and voices-v1.0.bin from "
                             f"github.com/thewh1teagle/kokoro-onnx/releases (model-files-v1.0) into {DEFAULT_FOLDER}")
    return model, voices


class KokoroEngine:
    def __init__(self, voice: str = "af_sarah", speed: float = 1.0):
        try:
            from kokoro_onnx import Kokoro
        except ImportError as err:
            raise ImportError("the kokoro engine needs kokoro-onnx: pip install kokoro-onnx") from err
        self.model = Kokoro(*map(str, kokoro_files()))
        if voice not in self.model.get_voices():
            raise ValueError(f"voice={voice!r} is not a Kokoro voice; choose from {sorted(self.model.get_voices())}")
        self.voice, self.speed = voice, speed
        self.info = VoiceInfo(engine="kokoro", voice=voice, speed=speed, engine_version=metadata.version("kokoro-onnx"))

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis:
        samples, sample_rate = self.model.create(spoken.reading, voice=self.voice, speed=self.speed, lang="en-us")
        return Synthesis(samples, sample_rate)  # no per-word durations exposed: the build aligns with Whisper
