"""Cheap checks that a trace measures what it claims: the tracer's layer-by-layer clean run equals the
model's own forward, restoring every state gives the clean score and restoring none the corrupted one.
A patch that silently does nothing, or an architecture table that points at the wrong module, fails here."""

from __future__ import annotations

import math

import torch

from .metric import Target
from .restoration import Restoration, TracingSelfCheckError

__all__ = ["self_check"]


def self_check(tracer, clean, corrupted, hooks, target: Target, options, high: float, low: float, inputs_embeds) -> None:
    """The layer-by-layer clean run must match the model's own forward; restoring every state must
    give the clean score, restoring none the corrupted one."""
    logits = tracer.model(inputs_embeds=inputs_embeds.unsqueeze(0)).logits
    model_high = target.score(logits[0, -target.positions:]).item()
    every = Restoration("all", 0, 0, 0, restore_input="all")
    none = Restoration("none", 0, 0, 0)
    restored_all, restored_none = (
        score.item() for score in tracer._run_group([every, none], 0, clean, corrupted, hooks, target, options)
    )
    tolerance = (1e-4 if tracer.runner.dtype == torch.float32 else 2e-2) * (1 if target.metric == "prob" else 10)
    checks = (
        ("the layer-by-layer clean run", high, model_high),
        ("restoring every state", restored_all, high),
        ("restoring no state", restored_none, low),
    )
    for name, got, want in checks:
        if not math.isclose(got, want, abs_tol=tolerance, rel_tol=tolerance):
            raise TracingSelfCheckError(
                f"{name} gave {target.metric}={got:.6f}, expected {want:.6f}: the ArchitectureSpec of "
                f"model_type={tracer.model.config.model_type!r} does not reproduce the model's forward"
            )
