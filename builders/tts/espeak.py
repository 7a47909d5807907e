"""espeak-ng, the robotic baseline voice: the Debian `espeak-ng` command (formant synthesis, no weights)."""

from __future__ import annotations

import io
import shutil
import subprocess

import soundfile

from known_speech.spoken import SpokenForm

from .base import Synthesis, VoiceInfo

__all__ = ["EspeakEngine"]


class EspeakEngine:
    """Any espeak-ng voice (`en-us`, `en-gb`, `en-us+f3`, ...); `speed` scales its 175 words per minute."""

    def __init__(self, voice: str = "en-us", speed: float = 1.0):
        self.binary = shutil.which("espeak-ng")
        if self.binary is None:
            raise ImportError("espeak-ng is not installed: apt-get install espeak-ng (scripts/setup.sh does)")
        version = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=True).stdout
        voices = subprocess.run([self.binary, "--voices"], capture_output=True, text=True, check=True).stdout
        base = voice.split("+", 1)[0]
        if not any(line.split()[1:2] == [base] or f" {base} " in line for line in voices.splitlines()[1:]):
            raise ValueError(f"voice={voice!r} is not an espeak-ng voice (see `espeak-ng --voices`)")
        self.voice, self.words_per_minute = voice, round(175 * speed)
        self.info = VoiceInfo(engine="espeak-ng", voice=voice, speed=speed,
                              engine_version=version.split(":", 1)[-1].split()[0] if ":" in version else version.strip())

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis:
        result = subprocess.run([self.binary, "-v", self.voice, "-s", str(self.words_per_minute), "--stdout", spoken.reading],
                                capture_output=True, check=True)
        samples, sample_rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
        # espeak-ng reports word positions only through its C callback API; the build aligns with Whisper
        return Synthesis(samples, sample_rate)
