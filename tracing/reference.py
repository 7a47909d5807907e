"""The reference algorithm, kept deliberately simple: ROME's causal trace loop.

One forward of (1 clean + samples corrupted) rows through the model's own `forward` per restored
state, with forward hooks that add the noise to the input embeddings and copy the clean row's
state into the corrupted rows. Used as the oracle in the tests and the baseline of the benchmark.
"""

from __future__ import annotations

import torch
from torch import nn

from .architectures import ArchitectureSpec, hidden_of, spec_for
from .restoration import window_layers
from .noise import subject_noise
from .metric import Target
from .result import TraceOptions

__all__ = ["reference_trace"]


def _score(model, inputs_embeds, subject_range, noise, patches, target: Target) -> float:
    """patches: list of (module, position) whose output at `position` is copied from row 0."""
    start, end = subject_range
    rows = torch.cat([inputs_embeds.unsqueeze(0)] * (1 + noise.shape[0]))
    rows[1:, start:end] += noise.to(rows.device)
    handles = []
    for module, position in patches:
        def hook(module, args, output, position=position):
            tensor = hidden_of(output)
            tensor[1:, position] = tensor[0, position]
            return output

        handles.append(module.register_forward_hook(hook))
    try:
        logits = model(inputs_embeds=rows).logits
    finally:
        for handle in handles:
            handle.remove()
    return target.score(logits[1:, -target.positions:]).mean().item()


@torch.no_grad()
def reference_trace(
    model: nn.Module,
    inputs_embeds: torch.Tensor,
    subject_range: tuple[int, int],
    answer_id: int | None,
    options: TraceOptions,
    noise_std: float,
    spec: ArchitectureSpec | None = None,
    answer_ids: list[int] | None = None,
) -> dict[str, object]:
    """{"high", "low", kind: (T, L) tensor} by ROME's loop; noise_std is sigma itself. The metric
    `options.metric` scores `answer_id`, or `answer_ids` at the input's last positions (attribute)."""
    target = Target(tuple(answer_ids) if answer_ids is not None else (answer_id,), options.metric)
    spec = spec or spec_for(model)
    layers = spec.layer_list(model)
    num_layers = len(layers)
    length, hidden = inputs_embeds.shape
    noise = subject_noise(options, subject_range[1] - subject_range[0], hidden, noise_std)
    logits = model(inputs_embeds=inputs_embeds.unsqueeze(0)).logits
    results: dict[str, object] = {
        "high": target.score(logits[0, -target.positions:]).item(),
        "low": _score(model, inputs_embeds, subject_range, noise, [], target),
    }
    prompt_length = length - (target.positions - 1)
    positions = range(prompt_length) if options.token_range is None else options.token_range
    for kind in options.kinds:
        table = torch.full((length, num_layers), float("nan"))
        for position in positions:
            for layer in range(num_layers):
                if kind == "hidden":
                    modules = [layers[layer]]
                else:
                    path = spec.mlp if kind == "mlp" else spec.attn
                    modules = [layers[i].get_submodule(path) for i in window_layers(layer, options.window, num_layers)]
                patches = [(module, position) for module in modules]
                table[position, layer] = _score(model, inputs_embeds, subject_range, noise, patches, target)
        results[kind] = table
    return results
