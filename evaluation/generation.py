"""Greedy generation of many prompts per forward, as the recall filter needs it: prompts left-padded
(ids with the pad id, embeddings with zeros) behind an attention mask, so that every prompt ends where
generation starts and `generate` derives each row's positions from the mask; the model's banned tokens
stay banned. The batch size comes from free GPU memory, as the tracer's chunks do."""

from __future__ import annotations

import logging

import torch

from .model_input import ModelInput

__all__ = ["generate_batch", "generation_batch_size", "greedy_new_tokens", "left_padded", "MAX_BATCH"]

logger = logging.getLogger(__name__)

MAX_BATCH = 64  # beyond this a 7B model's decode step is compute-bound: larger batches gain little
CPU_BATCH = 8  # CPU: batching gains little; keep memory and latency per batch small


def generation_batch_size(model: torch.nn.Module, device: str | torch.device, longest: int, max_new_tokens: int) -> int:
    """How many prompts of up to `longest` positions fit one batch: each row's key/value cache, its
    hidden states and its float32 logits at the last position, in 60 % of the free GPU memory."""
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BATCH
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    element = next(model.parameters()).element_size()
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    positions = longest + max_new_tokens
    cache = 2 * config.num_hidden_layers * kv_heads * head_dim * element * positions
    # the prompt's forward: activations of one layer at a time (hidden, MLP) and attention scores
    activations = positions * element * (4 * config.hidden_size + 3 * (getattr(config, "intermediate_size", 0) or 0))
    activations += 4 * heads * positions * positions
    logits = 2 * 4 * config.vocab_size
    return max(1, min(MAX_BATCH, int(0.6 * free / (cache + activations + logits))))


def left_padded(rows: list[list[int]], pad: int | None, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' ids right-aligned behind `pad` (0 where the tokenizer has none), and the attention mask that
    hides the padding."""
    longest = max(len(row) for row in rows)
    ids = torch.full((len(rows), longest), pad if pad is not None else 0, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for index, row in enumerate(rows):
        ids[index, longest - len(row):] = torch.tensor(row, device=device)
        mask[index, longest - len(row):] = 1
    return ids, mask


@torch.no_grad()
def greedy_new_tokens(model, attention_mask: torch.Tensor, max_new_tokens: int, pad: int | None, *,
                      input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                      banned: list[int] | None = None, end_id: int | None = None) -> list[list[int]]:
    """Each left-padded row's greedy continuation, the new tokens only; with `end_id`, generation stops once every
    row has written it and each row is cut before it (else the model's own end of sequence ends a row)."""
    given = {"input_ids": input_ids} if input_ids is not None else {"inputs_embeds": inputs_embeds}
    stop = {"eos_token_id": end_id} if end_id is not None else {}
    output = model.generate(**given, attention_mask=attention_mask, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=pad, bad_words_ids=[[i] for i in banned] if banned else None, **stop)
    prompt_length = input_ids.shape[1] if input_ids is not None else 0  # with embeddings only new tokens return
    rows = output[:, prompt_length:].tolist()
    return [row[:row.index(end_id)] if end_id is not None and end_id in row else row for row in rows]


@torch.no_grad()
def generate_batch(model, tokenizer, inputs: list[ModelInput], max_new_tokens: int, banned: list[int],
                   device: str | torch.device) -> list[str]:
    """Greedy continuations of `inputs` (all ids, or all embeddings), decoded as text."""
    if not inputs:
        return []
    embedded = inputs[0].inputs_embeds is not None
    if any((item.inputs_embeds is not None) != embedded for item in inputs):
        raise ValueError("a batch mixes id inputs and embedding inputs")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if embedded:
        longest = max(item.length for item in inputs)
        mask = torch.zeros((len(inputs), longest), dtype=torch.long, device=device)
        first = inputs[0].inputs_embeds
        embeds = torch.zeros((len(inputs), longest, first.shape[-1]), dtype=first.dtype, device=device)
        for row, item in enumerate(inputs):
            mask[row, longest - item.length:] = 1
            embeds[row, longest - item.length:] = item.inputs_embeds.to(device)
        rows = greedy_new_tokens(model, mask, max_new_tokens, pad, inputs_embeds=embeds, banned=banned)
    else:
        ids, mask = left_padded([list(item.input_ids) for item in inputs], pad, device)
        rows = greedy_new_tokens(model, mask, max_new_tokens, pad, input_ids=ids, banned=banned)
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows]
