"""Where each decoder family keeps its embeddings, layers, MLP and attention: declared as data.

Looked up by `config.model_type`; `register_architecture` adds a family without touching the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = ["ArchitectureSpec", "ARCHITECTURES", "register_architecture", "spec_for", "UnsupportedArchitecture",
           "hidden_of"]


def hidden_of(output) -> torch.Tensor:
    """The hidden states in a decoder layer's or attention module's output: transformers returns a tuple from
    some (attention: (hidden, weights); layers before 4.54: (hidden, ...)) and a tensor from others."""
    return output[0] if isinstance(output, tuple) else output


class UnsupportedArchitecture(ValueError):
    pass


@dataclass(frozen=True)
class ArchitectureSpec:
    """Module paths (dotted, from the CausalLM) and the calling convention of a decoder layer."""

    embed: str  # token embedding: ids -> input embeddings (where noise is added)
    layers: str  # ModuleList of decoder layers
    mlp: str  # inside a layer: module whose output is the MLP contribution to the residual
    attn: str  # inside a layer: module whose output (first element) is the attention contribution
    final_norm: str
    unembed: str
    positions: Literal["rotary", "learned"]
    rotary: str | None = None  # module computing (cos, sin) from (hidden, position_ids)
    learned_positions: str | None = None  # position embedding added to the input embeddings
    cache_kwarg: str = "past_key_values"  # the layer's keyword for the K/V cache

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        return model.get_submodule(self.layers)


_LLAMA_LIKE = ArchitectureSpec(
    embed="model.embed_tokens",
    layers="model.layers",
    mlp="mlp",
    attn="self_attn",
    final_norm="model.norm",
    unembed="lm_head",
    positions="rotary",
    rotary="model.rotary_emb",
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "llama": _LLAMA_LIKE,  # Llama-2/3, SmolLM2, SpiritLM
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gpt2": ArchitectureSpec(
        embed="transformer.wte",
        layers="transformer.h",
        mlp="mlp",
        attn="attn",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        positions="learned",
        learned_positions="transformer.wpe",
    ),
    "gpt_neox": ArchitectureSpec(
        embed="gpt_neox.embed_in",
        layers="gpt_neox.layers",
        mlp="mlp",
        attn="attention",
        final_norm="gpt_neox.final_layer_norm",
        unembed="lm_head",
        positions="rotary",
        rotary="gpt_neox.rotary_emb",
        cache_kwarg="layer_past",
    ),
}


def register_architecture(model_type: str, spec: ArchitectureSpec) -> None:
    ARCHITECTURES[model_type] = spec


def spec_for(model: nn.Module) -> ArchitectureSpec:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"model_type={model_type!r} has no ArchitectureSpec; supported: {sorted(ARCHITECTURES)}. "
            f"Add one with known_speech.tracing.register_architecture()."
        )
    return ARCHITECTURES[model_type]
