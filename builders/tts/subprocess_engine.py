"""Client side of the JSON-lines TTS protocol (see `worker.py`): an engine living in its own venv."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile

from known_speech.spoken import SpokenForm

from .base import Synthesis, VoiceInfo

__all__ = ["SubprocessEngine", "MeloTTSEngine", "PiperSubprocessEngine", "melotts_python", "create_melotts_env",
           "MELOTTS_SPEAKERS", "WORKER_SCRIPT"]

logger = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
MELOTTS_SPEAKERS = ("EN-US", "EN-BR", "EN_INDIA", "EN-AU", "EN-Default")
DEFAULT_MELOTTS_ENV = Path.home() / ".cache" / "known-speech" / "melotts-venv"


class SubprocessEngine:
    """Starts the worker with another interpreter and talks to it one utterance at a time."""

    def __init__(self, name: str, worker_engine: str, voice: str, python: str | None = None, speed: float = 1.0,
                 device: str = "cpu"):
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._folder = tempfile.TemporaryDirectory(prefix="known-speech-tts-")
        command = [python or sys.executable, str(WORKER_SCRIPT), "--engine", worker_engine, "--voice", voice,
                   "--speed", str(speed), "--device", device]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                        text=True, bufsize=1)
        self._next_id = 0
        ready = self._read()
        if not ready.get("ready"):
            self.close()
            raise RuntimeError(f"the {worker_engine} worker did not start: {ready.get('error')}")
        self.sample_rate = int(ready["sample_rate"])
        self.info = VoiceInfo(engine=name, voice=voice, speed=speed, engine_version=str(ready["version"]))

    def _dead(self) -> RuntimeError:
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:]
        return RuntimeError(f"the TTS worker exited (code {self.process.poll()}): {tail}")

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise self._dead()
        return json.loads(line)

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis:
        request_id, self._next_id = self._next_id, self._next_id + 1
        out = Path(self._folder.name) / f"{request_id}.wav"
        try:
            self.process.stdin.write(json.dumps({"id": request_id, "text": spoken.reading, "out": str(out),
                                                 "seed": known_id}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._dead() from None
        answer = self._read()
        if answer["id"] != request_id:
            raise RuntimeError(f"the TTS worker answered request {answer['id']}, expected {request_id}")
        if answer["error"]:
            raise RuntimeError(f"the TTS worker failed: {answer['error']}")
        samples, sample_rate = soundfile.read(answer["audio_path"], dtype="float32")
        out.unlink(missing_ok=True)
        times = answer["word_times_s"]
        if times is not None and len(times) != len(spoken.words):
            logger.warning("worker gave %d word times for %d spoken words; aligning with Whisper", len(times), len(spoken.words))
            times = None
        return Synthesis(samples, sample_rate, [tuple(t) for t in times] if times is not None else None,
                         seed=answer.get("seed"))

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._folder.cleanup()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def melotts_python() -> str:
    """The MeloTTS environment's interpreter: $KNOWN_SPEECH_MELOTTS_PYTHON, else the one `create_melotts_env` made."""
    python = os.environ.get("KNOWN_SPEECH_MELOTTS_PYTHON") or str(DEFAULT_MELOTTS_ENV / "bin" / "python")
    if not Path(python).exists():
        raise ValueError(f"no MeloTTS environment at {python}: run `known-speech tts-env melotts` "
                         f"(or set KNOWN_SPEECH_MELOTTS_PYTHON)")
    return python


def create_melotts_env(path: Path = DEFAULT_MELOTTS_ENV, python: str = sys.executable) -> list[list[str]]:
    """Create MeloTTS's own venv (it pins transformers 4.27 and old librosa); returns the commands run."""
    pip = str(path / "bin" / "python")
    commands = [
        [python, "-m", "venv", str(path)],
        [pip, "-m", "pip", "install", "--upgrade", "pip"],
        [pip, "-m", "pip", "install", "git+https://github.com/myshell-ai/MeloTTS.git", "soundfile"],
        [pip, "-m", "unidic", "download"],
    ]
    for command in commands:
        logger.info("running %s", " ".join(command))
        subprocess.run(command, check=True)
    return commands


class MeloTTSEngine(SubprocessEngine):
    """The paper's engine, in its own environment."""

    def __init__(self, voice: str = "EN-US", speed: float = 1.0, device: str = "cpu"):
        if voice not in MELOTTS_SPEAKERS:
            raise ValueError(f"voice={voice!r}: MeloTTS English speakers are {MELOTTS_SPEAKERS}")
        super().__init__("melotts", "melotts", voice, python=melotts_python(), speed=speed, device=device)


class PiperSubprocessEngine(SubprocessEngine):
    """Piper through the protocol (this interpreter): the protocol's own end-to-end check."""

    def __init__(self, voice: str = "en_US-joe-medium", speed: float = 1.0):
        super().__init__("piper-subprocess", "piper", voice, speed=speed)
