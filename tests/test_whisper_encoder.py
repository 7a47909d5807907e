"""Whisper tiny.en's encoder read out of its CTranslate2 file into transformers' Whisper-architecture encoder (the one
Voxtral's audio tower is) computes what CTranslate2's own `encode` computes on the same log-mel features."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder_and_reference(spoken_dataset):
    import ctranslate2
    import torch
    import transformers
    from datasets import load_dataset

    from known_speech.audio import waveform_of
    from known_speech.ctranslate2_weights import encoder_dimensions, read_ctranslate2, whisper_encoder_state_dict
    from known_speech.settings import bundled_whisper_dir

    spec, variables = read_ctranslate2(bundled_whisper_dir() / "model.bin")
    assert spec == "WhisperSpec"
    dims = encoder_dimensions(variables)
    config = transformers.VoxtralEncoderConfig(
        hidden_size=dims["d_model"], num_hidden_layers=dims["encoder_layers"],
        num_attention_heads=dims["encoder_attention_heads"], intermediate_size=dims["encoder_ffn_dim"],
        num_mel_bins=dims["num_mel_bins"], max_source_positions=dims["max_source_positions"])
    encoder = transformers.VoxtralEncoder(config).eval()
    encoder.load_state_dict(whisper_encoder_state_dict(variables), strict=True)
    row = load_dataset(str(spoken_dataset), "piper-en_US-joe-medium", split="train")[2]  # "The capital of ... is"
    features = transformers.WhisperFeatureExtractor(feature_size=80)(
        waveform_of(row["audio"]), sampling_rate=16000, return_tensors="np").input_features.astype(np.float32)
    whisper = ctranslate2.models.Whisper(str(bundled_whisper_dir()), device="cpu", compute_type="float32")
    reference = np.asarray(whisper.encode(ctranslate2.StorageView.from_array(features)))
    with torch.no_grad():
        ours = encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    return encoder, features, reference, ours, dims


def test_the_encoder_read_from_ctranslate2_reproduces_its_encode(encoder_and_reference):
    """Whisper tiny.en: 4 layers of 384, 6 heads, 80 mel bins, 1,500 positions; float16 weights computed in float32
    on both sides: the outputs agree to 1e-4 (measured 1.9e-5) over all 1,500 positions of a real spoken prompt."""
    _, _, reference, ours, dims = encoder_and_reference
    assert dims == {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
                    "num_mel_bins": 80, "max_source_positions": 1500}
    assert ours.shape == reference.shape == (1, 1500, 384)
    assert np.abs(ours - reference).max() < 1e-4 * max(1.0, np.abs(reference).max())


def test_a_wrong_mapping_is_caught(encoder_and_reference):
    """The same comparison with the query and key projections of one layer swapped, or the positions shifted by one,
    is far off: the agreement above is not a tolerance wide enough to pass anything."""
    import torch

    encoder, features, reference, _, _ = encoder_and_reference
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    for broken in ("swap", "shift"):
        wrong = dict(state)
        if broken == "swap":
            wrong["layers.1.self_attn.q_proj.weight"], wrong["layers.1.self_attn.k_proj.weight"] = \
                state["layers.1.self_attn.k_proj.weight"], state["layers.1.self_attn.q_proj.weight"]
        else:
            wrong["embed_positions.weight"] = torch.roll(state["embed_positions.weight"], 1, dims=0)
        encoder.load_state_dict(wrong)
        with torch.no_grad():
            off = encoder(torch.from_numpy(features)).last_hidden_state.numpy()
        assert np.abs(off - reference).max() > 0.1, broken
    encoder.load_state_dict(state)
