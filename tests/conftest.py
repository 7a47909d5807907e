import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the Hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def write_source(tmp_path):
    """Write a Known-format JSON list and return its path."""

    def write(records, name="known.json"):
        path = tmp_path / name
        path.write_text(json.dumps(records), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def known_records():
    from known_speech.source import load_known

    return load_known()


@pytest.fixture(scope="session")
def smollm2():
    from known_speech.loading import load_causal_lm

    return load_causal_lm("smollm2")


@pytest.fixture(scope="session")
def spoken_dataset(tmp_path_factory, known_records):
    """A real Piper + Whisper build of six facts (plain, digits, "Rome", "&", non-ASCII)."""
    from known_speech.builders.build import build_dataset

    folder = tmp_path_factory.mktemp("spoken")
    by_id = {r.known_id: r for r in known_records}
    source = folder / "source.json"
    source.write_text(json.dumps([by_id[i].to_dict() for i in (0, 3, 21, 65, 182, 474)]), encoding="utf-8")
    out = folder / "known-speech"
    build_dataset(out, source=str(source), workers=1)
    return out


@pytest.fixture(scope="session")
def spiritlm_release(tmp_path_factory):
    """A Spirit LM checkpoints folder in the release layout with random weights (tests/release_formats.py):
    a SentencePiece tokenizer.model trained on the Known prompts with [Text] [Speech] [Hu0]..[Hu500] as
    user-defined pieces, a tiny Llama, and speech_tokenizer/hubert_25hz as fairseq mHuBERT + linear quantizer."""
    from .release_formats import SPIRITLM_MARKERS, train_sentencepiece, write_spiritlm_release

    root = tmp_path_factory.mktemp("spiritlm-checkpoints")
    write_spiritlm_release(root, train_sentencepiece(root / "sentencepiece", SPIRITLM_MARKERS, vocab_size=3000))
    return root


@pytest.fixture(scope="session")
def tiny_audio_lm(tmp_path_factory, smollm2):
    """Saves, once per family, a tiny random audio-text model of transformers' real class with its real processor
    (tests/audio_lm_models.py); returns the folder."""
    from .audio_lm_models import save_tiny_audio_lm

    root = tmp_path_factory.mktemp("tiny-audio-lms")
    saved = {}

    def folder(family: str):
        if family not in saved:
            saved[family] = save_tiny_audio_lm(family, root / family, smollm2[1])
        return saved[family]

    return folder


@pytest.fixture(scope="session")
def tiny_qwen2_audio(tiny_audio_lm):
    """A random Qwen2-Audio (1 audio layer, 2 text layers) saved with its processor (SmolLM2's tokenizer
    with the audio tokens), as `from_pretrained` folders are."""
    return tiny_audio_lm("qwen2-audio")
