"""Attention for many rows that share a key/value prefix, without copying the prefix into each row.

A restoration at position t leaves every position before t as it was in the corrupted run, so all
restorations of one noise sample attend to the same keys and values there. Repeating that prefix
for every row and concatenating it with the row's own keys moved more bytes than the attention
itself. Instead the attention is split into two exact parts, merged through their log-sum-exp:
all rows of a sample against that sample's prefix in one call (the rows become one long query),
and each row causally against its own positions t.. . The function is registered as a transformers
attention implementation, so the model's own attention modules call it with their own projections,
rotary embeddings and scaling.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ATTENTION_NAME", "SharedPrefix", "SharedPrefixUnsupported", "attention_implementation",
           "math_attention_with_lse", "shared_prefix_attention"]

ATTENTION_NAME = "known_speech_shared_prefix"


class SharedPrefixUnsupported(RuntimeError):
    """The attention call asked for something the split attention does not do (the engine then
    falls back to giving every row its own copy of the prefix)."""


@dataclass
class SharedPrefix:
    """The corrupted run's keys and values before position t, one set per noise sample.

    Rows of the batch are sample-major: row = sample * restorations + restoration.
    """

    keys: torch.Tensor  # (samples, kv_heads, t, head_dim), after rotary embedding
    values: torch.Tensor
    calls: int = 0  # attention calls that used it: zero after a layer means it never arrived

    @property
    def samples(self) -> int:
        return self.keys.shape[0]


def _repeat_heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, kv_heads, L, D) -> (B, heads, L, D) for grouped-query attention."""
    groups = heads // states.shape[1]
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)


def _attention_with_lse(query, key, value, causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention and its log-sum-exp per query: (B, H, Lq, D), (B, H, Lq) float32.

    The fused kernels return the log-sum-exp that SDPA's public function drops; elsewhere the math
    is spelled out in float32. `causal` aligns the last query with the last key (here Lq == Lk).
    """
    if query.is_cuda:
        head_dim = query.shape[-1]
        if query.dtype in (torch.float16, torch.bfloat16) and head_dim % 8 == 0 and head_dim <= 256:
            output, lse, *_ = torch.ops.aten._scaled_dot_product_flash_attention(
                query, key, value, 0.0, causal, False, scale=scale
            )
            return output, lse
        output, lse, *_ = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, None, True, 0.0, causal, scale=scale
        )
        return output, lse[..., : query.shape[-2]]  # the kernel pads it to its block size
    if query.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, causal, scale=scale)
    return math_attention_with_lse(query, key, value, causal, scale)


def math_attention_with_lse(query, key, value, causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The same, spelled out in float32: for devices without a fused kernel that returns it."""
    scores = (query.float() @ key.float().transpose(-1, -2)) * scale
    if causal:
        blocked = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).triu(1)
        scores = scores.masked_fill(blocked, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return (torch.exp(scores - lse[..., None]) @ value.float()).to(query.dtype), lse


def shared_prefix_attention(
    module: nn.Module,
    query: torch.Tensor,  # (B, heads, q, D): B = samples x restorations, positions t..t+q-1
    key: torch.Tensor,  # (B, kv_heads, q, D): the rows' own keys at those positions
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    shared_prefix: SharedPrefix | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal attention of each row over [the shared prefix of its sample, its own positions]."""
    if shared_prefix is None:
        raise SharedPrefixUnsupported(f"{ATTENTION_NAME} is only for the tracing engine's restorations")
    batch, heads, length, head_dim = query.shape
    prefix_length = shared_prefix.keys.shape[-2]
    window = kwargs.get("sliding_window")
    if window is not None and prefix_length + length > window:
        # with SDPA the window lives in the model-level mask, which the engine replaces: refuse, never ignore it
        raise ValueError(f"the prompt has {prefix_length + length} positions, more than the sliding window of "
                         f"{type(module).__name__} ({window}): tracing such prompts is not supported")
    if attention_mask is not None or dropout or kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        raise SharedPrefixUnsupported("masking, dropout, soft-capping or sinks")
    scale = head_dim**-0.5 if scaling is None else scaling
    samples = shared_prefix.samples
    rows = batch // samples
    own_output, own_lse = _attention_with_lse(
        query, _repeat_heads(key, heads), _repeat_heads(value, heads), causal=True, scale=scale
    )
    shared_prefix.calls += 1
    if prefix_length == 0:
        return own_output.transpose(1, 2).contiguous(), None
    # all rows of a sample as one query of rows x q positions: a view when the projections left the
    # query in (B, q, heads, D) memory order, as transformers' attention modules do
    sample_query = query.transpose(1, 2).reshape(samples, rows * length, heads, head_dim).transpose(1, 2)
    prefix_output, prefix_lse = _attention_with_lse(
        sample_query,
        _repeat_heads(shared_prefix.keys, heads),
        _repeat_heads(shared_prefix.values, heads),
        causal=False,
        scale=scale,
    )
    # both parts in the (B, q, heads, ...) order transformers expects back; the fused kernels write their
    # outputs in that memory order, so these are views (the log-sum-exps, 1/head_dim of the size, are copied)
    prefix_output = prefix_output.transpose(1, 2).reshape(batch, length, heads, head_dim)
    prefix_lse = prefix_lse.transpose(1, 2).reshape(batch, length, heads)
    own_output, own_lse = own_output.transpose(1, 2), own_lse.transpose(1, 2)
    # softmax over both parts = own + w * (prefix - own), w = exp(prefix_lse) / (exp(prefix_lse) + exp(own_lse));
    # one pass over the outputs (lerp computes in float32 inside; w is rounded to the outputs' dtype)
    prefix_weight = torch.sigmoid(prefix_lse - own_lse).to(own_output.dtype)
    output = torch.lerp(own_output, prefix_output, prefix_weight[..., None])
    return output.contiguous(), None


@functools.cache
def _register() -> None:
    # on first use, so that reading results (`import known_speech.tracing`) does not import transformers
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)


@contextlib.contextmanager
def attention_implementation(attention_modules: Iterable[nn.Module], name: str) -> Iterator[None]:
    """Route the attention modules through `name` for the duration, then restore their configs."""
    if name == ATTENTION_NAME:
        _register()
    configs = {id(module.config): module.config for module in attention_modules if hasattr(module, "config")}
    previous = {key: config._attn_implementation for key, config in configs.items()}
    try:
        for config in configs.values():
            config._attn_implementation = name
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation = previous[key]
