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
    from known_speech.tracing.loading import load_causal_lm

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
def tiny_qwen2_audio(tmp_path_factory, smollm2):
    """A random Qwen2-Audio (1 audio layer, 2 text layers) saved with its processor (SmolLM2's tokenizer
    with the audio tokens), as `from_pretrained` folders are."""
    from transformers import (AutoTokenizer, Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor,
                              WhisperFeatureExtractor)

    import torch

    folder = tmp_path_factory.mktemp("tiny-qwen2-audio")
    smollm2[1].save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"], special_tokens=True)
    Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen2AudioConfig(
        audio_config=dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    Qwen2AudioForConditionalGeneration(config).save_pretrained(folder)
    return folder
