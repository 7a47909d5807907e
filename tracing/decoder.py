"""Run a Hugging Face decoder layer by layer on a suffix of positions, reusing a K/V prefix.

The engine needs what a plain `model(...)` call cannot give: start at layer j with given hidden
states for positions t..T-1 while positions < t come from another run's keys and values. The
layers themselves are the model's own modules, called with the model's own rotary embeddings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .architectures import ArchitectureSpec, hidden_of, spec_for

__all__ = ["DecoderRunner", "PrefixKV", "attention_backends"]


class PrefixKV:
    """Stands in for a transformers `Cache`: prepends a fixed K/V prefix per layer, optionally records.

    Attention modules only call `update(key, value, layer_idx)`; keys arrive after rotary embedding,
    in (batch, kv_heads, positions, head_dim).
    """

    def __init__(self, prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None, record: bool = False):
        self.prefix = prefix or {}
        self.recorded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.record = record

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        if self.record:
            self.recorded[layer_idx] = (key_states, value_states)
        if layer_idx in self.prefix:
            prefix_key, prefix_value = self.prefix[layer_idx]
            key_states = torch.cat([prefix_key, key_states], dim=-2)
            value_states = torch.cat([prefix_value, value_states], dim=-2)
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        prefix = self.prefix.get(layer_idx)
        return 0 if prefix is None else prefix[0].shape[-2]


class DecoderRunner:
    """The pieces of a causal LM the tracing engine calls one at a time."""

    def __init__(self, model: nn.Module, spec: ArchitectureSpec | None = None):
        self.model = model
        self.spec = spec or spec_for(model)
        self.layers = self.spec.layer_list(model)
        self.num_layers = len(self.layers)
        self.embed_module = model.get_submodule(self.spec.embed)
        self.final_norm = model.get_submodule(self.spec.final_norm)
        self.unembed = model.get_submodule(self.spec.unembed)
        self.rotary = model.get_submodule(self.spec.rotary) if self.spec.rotary else None
        self.learned_positions = (
            model.get_submodule(self.spec.learned_positions) if self.spec.learned_positions else None
        )
        self.mlp_modules = [layer.get_submodule(self.spec.mlp) for layer in self.layers]
        self.attn_modules = [layer.get_submodule(self.spec.attn) for layer in self.layers]
        self._compiled_forwards: dict[nn.Module, object] | None = None

    @contextlib.contextmanager
    def compiled_sublayers(self) -> Iterator[None]:
        """Inside: every layer's sublayers (norms, attention, MLP) run forwards compiled by inductor.

        It fuses the elementwise work between the matrix products (norm upcasts, rotary, activation).
        Only `forward` is replaced, so the tracing hooks still run in each module's eager `__call__`
        and never enter a graph; instances of one class share their graphs, and shapes are dynamic.
        """
        if self._compiled_forwards is None:
            self._compiled_forwards = {
                child: torch.compile(child.forward, dynamic=True)
                for layer in self.layers
                for child in layer.children()
            }
        # a forward set on the instance (accelerate's offloading hooks, a user's patch) is put back as it was
        own_forwards = {module: vars(module)["forward"] for module in self._compiled_forwards if "forward" in vars(module)}
        try:
            for module, forward in self._compiled_forwards.items():
                module.forward = forward
            yield
        finally:
            for module in self._compiled_forwards:
                if module in own_forwards:
                    module.forward = own_forwards[module]
                else:
                    module.__dict__.pop("forward", None)

    @property
    def device(self) -> torch.device:
        return self.embed_module.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_module.weight.dtype

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_module(input_ids)

    def layer_input(self, inputs_embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Input embeddings -> residual stream entering layer 0 (adds learned position embeddings)."""
        if self.learned_positions is not None:
            return inputs_embeds + self.learned_positions(positions).to(inputs_embeds.dtype)
        return inputs_embeds

    def position_embeddings(self, hidden: torch.Tensor, positions: torch.Tensor):
        if self.rotary is None:
            return None
        return self.rotary(hidden, positions.unsqueeze(0))

    def causal_mask(self, query_length: int, prefix_length: int) -> torch.Tensor:
        """Additive (1, 1, q, prefix + q) mask: query i sees keys up to prefix + i."""
        keys = torch.arange(prefix_length + query_length, device=self.device)
        queries = torch.arange(query_length, device=self.device) + prefix_length
        blocked = keys.unsqueeze(0) > queries.unsqueeze(1)
        mask = torch.zeros(blocked.shape, dtype=self.dtype, device=self.device)
        return mask.masked_fill(blocked, torch.finfo(self.dtype).min)[None, None]

    def run_layer(
        self,
        index: int,
        hidden: torch.Tensor,  # (B, q, d) residual stream entering the layer at positions t..t+q-1
        positions: torch.Tensor,  # (q,)
        cache: PrefixKV | None,
        mask: torch.Tensor | None,
        position_embeddings=None,
        **attention_kwargs,  # reach the attention implementation (transformers passes them through)
    ) -> torch.Tensor:
        kwargs = {"attention_mask": mask, **attention_kwargs}
        if cache is not None:
            kwargs.update({self.spec.cache_kwarg: cache, "use_cache": True})
        if self.spec.positions == "rotary":
            kwargs["position_ids"] = positions.unsqueeze(0)
            kwargs["position_embeddings"] = position_embeddings
        output = self.layers[index](hidden, **kwargs)
        return hidden_of(output)

    def logits_last(self, hidden_last: torch.Tensor) -> torch.Tensor:
        """(..., d) residual after the last layer at the read positions -> (..., vocab) logits."""
        return self.unembed(self.final_norm(hidden_last))


def attention_backends(device: torch.device):
    """On GPU, keep SDPA off cuDNN: it builds a plan per new shape, and restorations make many shapes."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
