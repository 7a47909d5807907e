"""What a trace scores at the end of the prompt: ROME's P(answer), its log, or the whole attribute.

    prob       P(first answer token) at the last position (ROME's causal trace)
    logprob    log P(first answer token) at the last position
    attribute  log P(attribute) = the sum of log P(token_j | prompt, token_<j) over all the attribute's
               tokens, teacher-forced: the input is the prompt and the attribute but its last token, and
               the last len(attribute) positions are read
Every metric is averaged over noise samples; an indirect effect is restored minus corrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["Metric", "METRICS", "Target", "metric_label"]

Metric = Literal["prob", "logprob", "attribute"]
METRICS: tuple[Metric, ...] = ("prob", "logprob", "attribute")


def metric_label(metric: Metric, answer: str = "answer") -> str:
    """What a score of `metric` is, for axes and tables."""
    return {"prob": f"P({answer})", "logprob": f"log P({answer})", "attribute": f"log P({answer}, all tokens)"}[metric]


@dataclass(frozen=True)
class Target:
    """The token ids a trace scores and how; they are read at the input's last `len(ids)` positions."""

    ids: tuple[int, ...]
    metric: Metric = "prob"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric={self.metric!r}: choose from {METRICS}")
        if not self.ids or (self.metric != "attribute" and len(self.ids) != 1):
            raise ValueError(f"metric={self.metric!r} scores {'one token' if self.metric != 'attribute' else 'tokens'}, "
                             f"got {len(self.ids)}")

    @property
    def positions(self) -> int:
        """How many positions at the end of the input are read."""
        return len(self.ids)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., positions, vocab) logits at the read positions -> (...) scores."""
        logits = logits.float()
        if self.metric == "prob":
            return torch.softmax(logits[..., -1, :], dim=-1)[..., self.ids[0]]
        log_probs = torch.log_softmax(logits, dim=-1)
        ids = torch.tensor(self.ids, device=logits.device)
        picked = log_probs.gather(-1, ids.expand(*log_probs.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return picked[..., -1] if self.metric == "logprob" else picked.sum(dim=-1)
