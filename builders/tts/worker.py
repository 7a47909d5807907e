"""A TTS engine in another Python environment, behind JSON lines on stdin/stdout.

Run as a script by the interpreter of the engine's own environment (MeloTTS pins versions that clash
with ours), so it imports nothing from known_speech unless the engine is one of ours:

    python worker.py --engine melotts --voice EN-US --speed 1.0

It answers first with {"ready": true, "engine", "voice", "version", "sample_rate"}; then, per request
line {"id", "text", "out"}, it writes the audio to `out` (WAV) and answers {"id", "audio_path",
"sample_rate", "word_times_s" or null, "error" or null}. Anything else the engine prints goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from importlib import metadata
from pathlib import Path

if __name__ == "__main__":
    # run as a script, this folder heads sys.path, and its piper.py would shadow the piper package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


class _Melo:
    """MeloTTS (the paper's engine): English speakers EN-US, EN-BR, EN_INDIA, EN-AU, EN-Default."""

    def __init__(self, voice: str, speed: float, device: str):
        from melo.api import TTS

        self.model = TTS(language="EN", device=device)
        speakers = self.model.hps.data.spk2id
        if voice not in speakers:
            raise ValueError(f"MeloTTS English has speakers {sorted(speakers)}, not {voice!r}")
        self.speaker_id, self.speed = speakers[voice], speed
        self.sample_rate = self.model.hps.data.sampling_rate
        self.version = metadata.version("melotts")

    def synthesize(self, text: str, out: str, seed: int | None) -> tuple[list | None, int | None]:
        import random

        import numpy as np
        import torch

        if seed is not None:  # MeloTTS samples durations and noise with torch: one seed per item
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
        self.model.tts_to_file(text, self.speaker_id, out, speed=self.speed, quiet=True)
        return None, seed  # MeloTTS keeps its durations inside the model; the build aligns with Whisper


class _Piper:
    """Our Piper engine, so that the protocol itself can be tested where MeloTTS is not installed."""

    def __init__(self, voice: str, speed: float, device: str):
        from known_speech.builders.tts.piper import PiperEngine

        self.engine = PiperEngine(voice, length_scale=1.0 / speed if speed != 1.0 else None)
        self.version = self.engine.info.engine_version
        self.sample_rate = self.engine._voice.config.sample_rate

    def synthesize(self, text: str, out: str, seed: int | None) -> tuple[list | None, int | None]:
        import soundfile

        from known_speech.spoken import verbalise

        synthesis = self.engine.synthesize(verbalise(text))
        soundfile.write(out, synthesis.samples, synthesis.sample_rate)
        return synthesis.word_times_s, synthesis.seed


WORKER_ENGINES = {"melotts": _Melo, "piper": _Piper}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, choices=sorted(WORKER_ENGINES))
    parser.add_argument("--voice", required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    protocol = sys.stdout
    sys.stdout = sys.stderr  # engines that print must not break the protocol
    try:
        engine = WORKER_ENGINES[args.engine](args.voice, args.speed, args.device)
    except Exception as err:
        protocol.write(json.dumps({"ready": False, "error": f"{type(err).__name__}: {err}"}) + "\n")
        protocol.flush()
        return 1
    protocol.write(json.dumps({"ready": True, "engine": args.engine, "voice": args.voice,
                               "version": engine.version, "sample_rate": engine.sample_rate}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"id": request["id"], "audio_path": request["out"], "sample_rate": engine.sample_rate,
                  "word_times_s": None, "seed": None, "error": None}
        try:
            with contextlib.redirect_stdout(sys.stderr):
                answer["word_times_s"], answer["seed"] = engine.synthesize(request["text"], request["out"],
                                                                           request.get("seed"))
        except Exception as err:  # one failing item is answered, not fatal
            answer["error"] = f"{type(err).__name__}: {err}"
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
