"""Spirit LM's speech units without the spiritlm package: the linear quantizer port and the fairseq mHuBERT
conversion, each against a forward written here from the release's definition, on checkpoints the tests
write in the release's layout; and the token order of the expressive model."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from known_speech.unit_tokenizer import load_quantizer, load_unit_tokenizer
from known_speech.units import interleave_expressive

from .release_formats import TINY_MHUBERT, write_fairseq_hubert, write_linear_quantizer


def _reference_linear_quantizer(state: dict, features: np.ndarray) -> np.ndarray:
    """Spirit LM's LinearQuantizerModel written out: three linear layers with leaky ReLU (slope 0.01),
    argmax, then each blank (id vocab_size) takes the nearest non-blank unit to its left, wrapping round."""
    weights = {k: v.double().numpy() for k, v in state["model_weight"].items()}
    hidden = features.astype(np.float64)
    for index in (0, 2, 4):
        hidden = hidden @ weights[f"{index}.weight"].T + weights[f"{index}.bias"]
        if index < 4:
            hidden = np.where(hidden > 0, hidden, 0.01 * hidden)
    codes = hidden.argmax(-1)
    blank = state["model_cfg"]["vocab_size"]
    if (codes == blank).all():
        return codes
    out = codes.copy()
    for i in np.flatnonzero(codes == blank):
        j = i
        while codes[j] == blank:
            j = (j - 1) % codes.size
        out[i] = codes[j]
    return out


def test_linear_quantizer_port_equals_the_network_written_out(tmp_path):
    state = write_linear_quantizer(tmp_path / "L11_quantizer_500.pt", blank_bias=30.0)
    quantizer = load_quantizer(tmp_path / "L11_quantizer_500.pt")
    assert quantizer.kind == "linear"
    features = np.random.default_rng(0).normal(size=(400, 32)).astype(np.float32)
    raw = _reference_linear_quantizer({**state, "model_cfg": {**state["model_cfg"], "vocab_size": 10 ** 9}}, features)
    assert 0.1 < (raw == 500).mean() < 0.9, "the blank must be common for this test to bite"
    features = np.concatenate([features[raw == 500][:1], features])  # frame 0 blank: it wraps round
    units = quantizer(torch.from_numpy(features)).numpy()
    assert units.tolist() == _reference_linear_quantizer(state, features).tolist()
    assert units.max() < 500 and len(set(units.tolist())) > 20


def _reference_hubert_layer(weights: dict, config: dict, waveform: np.ndarray, layer: int) -> torch.Tensor:
    """fairseq's HuBERT (layer_norm_first=False) up to `output_layer`, written with torch.nn.functional."""
    from known_speech.hubert_conversion import conv_layers

    w = {k: v.double() for k, v in weights.items()}
    x = torch.from_numpy(waveform).double()[None, None]
    for index, (dim, _, stride) in enumerate(conv_layers(config["conv_feature_layers"])):
        x = F.conv1d(x, w[f"feature_extractor.conv_layers.{index}.0.weight"], stride=stride)
        if index == 0:  # Fp32GroupNorm(dim, dim)
            x = F.group_norm(x, dim, w["feature_extractor.conv_layers.0.2.weight"], w["feature_extractor.conv_layers.0.2.bias"])
        x = F.gelu(x)
    x = x.transpose(1, 2)
    x = F.layer_norm(x, x.shape[-1:], w["layer_norm.weight"], w["layer_norm.bias"])
    x = F.linear(x, w["post_extract_proj.weight"], w["post_extract_proj.bias"])
    g, v = w["encoder.pos_conv.0.weight_g"], w["encoder.pos_conv.0.weight_v"]
    kernel = v * (g / v.norm(dim=(0, 1), keepdim=True))  # weight_norm(dim=2)
    position = F.conv1d(x.transpose(1, 2), kernel, w["encoder.pos_conv.0.bias"], padding=config["conv_pos"] // 2,
                        groups=config["conv_pos_groups"])
    position = position[:, :, :-1] if config["conv_pos"] % 2 == 0 else position  # SamePad
    x = x + F.gelu(position).transpose(1, 2)
    hidden = x.shape[-1]
    x = F.layer_norm(x, (hidden,), w["encoder.layer_norm.weight"], w["encoder.layer_norm.bias"])
    heads = config["encoder_attention_heads"]
    for index in range(layer):
        p = f"encoder.layers.{index}."
        q, k, v = (F.linear(x, w[p + f"self_attn.{n}_proj.weight"], w[p + f"self_attn.{n}_proj.bias"]) for n in "qkv")
        split = [t.view(1, -1, heads, hidden // heads).transpose(1, 2) for t in (q * (hidden // heads) ** -0.5, k, v)]
        attention = torch.softmax(split[0] @ split[1].transpose(-1, -2), dim=-1) @ split[2]
        attention = F.linear(attention.transpose(1, 2).reshape(1, -1, hidden), w[p + "self_attn.out_proj.weight"],
                             w[p + "self_attn.out_proj.bias"])
        x = F.layer_norm(x + attention, (hidden,), w[p + "self_attn_layer_norm.weight"], w[p + "self_attn_layer_norm.bias"])
        feed = F.linear(F.gelu(F.linear(x, w[p + "fc1.weight"], w[p + "fc1.bias"])), w[p + "fc2.weight"], w[p + "fc2.bias"])
        x = F.layer_norm(x + feed, (hidden,), w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"])
    return x[0]


def test_release_mhubert_converts_to_transformers_and_both_paths_give_the_same_units(tmp_path):
    release = tmp_path / "hubert_25hz"
    weights = write_fairseq_hubert(release / "mhubert_base_25hz.pt")
    write_linear_quantizer(release / "L11_quantizer_500.pt", blank_bias=1.0)
    from_release = load_unit_tokenizer(release)
    assert from_release.rate_hz == 25.0 and from_release.quantizer.kind == "linear"
    waveform = np.random.default_rng(3).normal(scale=0.3, size=16_000 * 2 + 123).astype(np.float32)
    features = from_release.features(waveform).double()
    expected = _reference_hubert_layer(weights, TINY_MHUBERT, waveform, 11)
    assert features.shape == expected.shape == (50, 32)  # 2 s at 25 Hz
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)
    # the transformers path: the converted HubertModel saved as a folder, with the same quantizer file
    converted = tmp_path / "mhubert-hf"
    from_release.model.save_pretrained(converted)
    (converted / "L11_quantizer_500.pt").write_bytes((release / "L11_quantizer_500.pt").read_bytes())
    from_hf = load_unit_tokenizer(converted)
    units = from_release.encode(waveform)
    assert units.tolist() == from_hf.encode(waveform).tolist() and units.size == 50
    assert from_hf.provenance.same_units_as(from_release.provenance)
    # a different quantizer means different units: the provenance says so
    write_linear_quantizer(converted / "L11_quantizer_500.pt", seed=1)
    assert not load_unit_tokenizer(converted).provenance.same_units_as(from_release.provenance)


def test_spirit_lm_token_order_interleaves_by_time():
    """Hand-computed: style at 1 Hz (every frame), pitch at 12.5 Hz and HuBERT at 24.99 Hz de-duplicated;
    at equal times style, then pitch, then HuBERT; HuBERT frame 2 (2/24.99 s) comes after pitch frame 1 (0.08 s)."""
    tokens = interleave_expressive(hubert=[1, 1, 2, 3, 3, 3], pitch=[5, 6, 6], style=[9])
    assert "".join(t.text for t in tokens) == "[St9][Pi5][Hu1][Pi6][Hu2][Hu3]"
    assert "".join(t.text for t in interleave_expressive([4, 4, 4, 7, 4])) == "[Hu4][Hu7][Hu4]"
