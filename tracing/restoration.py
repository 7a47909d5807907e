"""What a causal trace restores, and the bookkeeping of a batch of restorations: the plan, the rows that
patch each sublayer, the hooks that capture or patch sublayer outputs, and how many fit one forward."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .architectures import hidden_of
from .decoder import DecoderRunner
from .result import TraceOptions

__all__ = ["TracingSelfCheckError", "Restoration", "RunStates", "SublayerHooks", "window_layers", "plan_restorations",
           "patch_rows", "rows_per_chunk"]


class TracingSelfCheckError(RuntimeError):
    """A restoration did not do what it must (a patch that never applied, or a wrong baseline)."""


def window_layers(layer: int, window: int, num_layers: int) -> range:
    """ROME's window: layers [layer - window//2, layer + ceil(window/2)) clipped to the model."""
    return range(max(0, layer - window // 2), min(num_layers, layer - (-window // 2)))


@dataclass(frozen=True)
class Restoration:
    kind: Literal["hidden", "mlp", "attn", "all", "none"]
    layer: int  # the column of the result table
    position: int  # t
    start_layer: int  # first layer whose computation it changes (num_layers: none left)
    window: range = range(0)  # layers whose sublayer output at t is restored
    restore_input: Literal["none", "first", "all"] = "none"


@dataclass
class RunStates:
    """Per-layer states of a full run: inputs to each layer (index L: last layer's output), K/V, sublayers."""

    hidden_in: list[torch.Tensor]  # L+1 x (rows, T, d)
    keys_values: list[tuple[torch.Tensor, torch.Tensor]]  # L x (rows, kv_heads, T, head_dim)
    sublayer_out: dict[str, list[torch.Tensor]]  # kind -> L x (rows, T, d)
    last_logits: torch.Tensor  # (rows, read positions, vocab) logits where the target is read


class SublayerHooks:
    """Forward hooks on every MLP and attention module that capture or restore their output at t."""

    def __init__(self, runner: DecoderRunner):
        self.capture: dict[str, list[torch.Tensor | None]] | None = None
        self.patch: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.handles = []
        for kind, modules in (("mlp", runner.mlp_modules), ("attn", runner.attn_modules)):
            for index, module in enumerate(modules):
                self.handles.append(module.register_forward_hook(self._hook(kind, index)))

    def _hook(self, kind: str, index: int):
        def hook(module: nn.Module, args, output):
            tensor = hidden_of(output)
            if self.capture is not None:
                self.capture[kind][index] = tensor.detach()
            entry = self.patch.pop((kind, index), None)
            if entry is not None:
                rows, value = entry  # rows: (B,) bool; where() rather than indexing, which syncs on GPU
                tensor[:, 0] = torch.where(rows[:, None], value, tensor[:, 0])  # position t: first of the suffix
            return output

        return hook

    @staticmethod
    @contextlib.contextmanager
    def last_position_only(module: nn.Module):
        """The module sees only the last position; its (B, 1, d) output broadcasts in the residual add,
        which leaves the other positions wrong and the last one exact (the self-check covers it)."""
        handle = module.register_forward_pre_hook(lambda module, args: (args[0][:, -1:], *args[1:]))
        try:
            yield
        finally:
            handle.remove()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def plan_restorations(kinds, positions, window: int, num_layers: int) -> list[Restoration]:
    """Every (kind, position, layer) restoration of a trace, each with the first layer it changes."""
    plan = []
    for kind in kinds:
        for position in positions:
            for layer in range(num_layers):
                if kind == "hidden":
                    plan.append(Restoration("hidden", layer, position, layer + 1, restore_input="first"))
                else:
                    layers = window_layers(layer, window, num_layers)
                    plan.append(Restoration(kind, layer, position, layers.start, window=layers))
    return plan


def patch_rows(order: list[Restoration], samples: int, num_layers: int, device: torch.device
               ) -> dict[tuple[str, int], torch.Tensor]:
    """Which rows restore their MLP / attention output at each layer: (kind, layer) -> (rows,) bool.

    Rows are sample-major (sample x active restorations) and the active restorations at a layer
    are a prefix of `order`. Built on the host and moved in one non-blocking copy.
    """
    masks: dict[tuple[str, int], list[bool]] = {}
    for layer in range(num_layers):
        active = [r for r in order if r.start_layer <= layer]
        for kind in ("mlp", "attn"):
            restored = [r.kind == kind and layer in r.window for r in active]
            if any(restored):
                masks[(kind, layer)] = restored * samples
    if not masks:
        return {}
    flat = torch.tensor([value for mask in masks.values() for value in mask], dtype=torch.bool)
    if device.type == "cuda":
        flat = flat.pin_memory()
    flat = flat.to(device, non_blocking=True)
    rows, start = {}, 0
    for key, mask in masks.items():
        rows[key] = flat[start : start + len(mask)]
        start += len(mask)
    return rows



def rows_per_chunk(model: nn.Module, runner: DecoderRunner, shared_prefix: bool, query_length: int, prefix_length: int,
                   samples: int, options: TraceOptions) -> int:
    """How many restorations fit one forward: from max_batch_tokens, or from free GPU memory."""
    if options.max_batch_tokens is not None:
        budget_tokens = options.max_batch_tokens
    elif runner.device.type == "cuda":
        device = runner.device
        free, _ = torch.cuda.mem_get_info(device)
        # blocks the caching allocator holds but no tensor uses are free to us, not to the driver
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        config = model.config
        hidden = config.hidden_size
        intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
        heads = config.num_attention_heads
        element = torch.finfo(runner.dtype).bits // 8
        # per position of a row: residual, norms, q/k/v/o and MLP activations, and the float32
        # merge of the two attention parts
        per_token = element * (10 * hidden + 4 * intermediate) + 3 * 4 * hidden
        if not shared_prefix:  # each row's own copy of the K/V prefix, and attention scores
            per_token += 2 * element * hidden * (prefix_length + query_length) / query_length
            per_token += 4 * heads * (prefix_length + query_length)
        budget_tokens = int(0.6 * free / per_token)
    else:
        budget_tokens = 16384
    return max(1, budget_tokens // (query_length * samples))
