"""Gaussian noise on the subject's input embeddings (the corrupted run)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .result import TraceOptions

__all__ = ["subject_noise", "corrupt", "subject_embedding_std", "EmbeddingMoments"]


def subject_noise(options: TraceOptions, n_subject: int, hidden_size: int, sigma: float) -> torch.Tensor:
    """(samples, n_subject, hidden) noise, identical for every restoration of a prompt.

    "rome" reproduces ROME's causal trace number for number: a fresh numpy RandomState(seed) drawing
    randn(samples, n_subject, hidden) in float64, scaled by sigma (ROME's seed is 1, the default).
    """
    shape = (options.samples, n_subject, hidden_size)
    if options.noise_mode == "rome":
        return sigma * torch.from_numpy(np.random.RandomState(options.seed).randn(*shape))
    generator = torch.Generator().manual_seed(options.seed)
    return sigma * torch.randn(shape, generator=generator, dtype=torch.float64)


def corrupt(inputs_embeds: torch.Tensor, subject_range: tuple[int, int], noise: torch.Tensor) -> torch.Tensor:
    """(T, d) clean embeddings -> (samples, T, d) with noise added at the subject positions."""
    start, end = subject_range
    corrupted = inputs_embeds.unsqueeze(0).repeat(noise.shape[0], 1, 1)
    corrupted[:, start:end] += noise.to(corrupted.device)  # in-place add in the model dtype, as ROME
    return corrupted


@dataclass(frozen=True)
class EmbeddingMoments:
    """Count, sum and sum of squares of embedding entries, in float64: what the noise level needs of a
    subject, so that ranks calibrate on their own items and the merged level is the same for any split
    (merged in a fixed order)."""

    count: int
    total: float
    squares: float

    @classmethod
    def of(cls, embeddings: torch.Tensor) -> "EmbeddingMoments":
        values = embeddings.detach().double()
        return cls(values.numel(), values.sum().item(), values.square().sum().item())

    @staticmethod
    def std(moments: Sequence["EmbeddingMoments"]) -> float:
        """The std (Bessel-corrected, as torch.std) of all the entries the moments stand for."""
        count = sum(m.count for m in moments)
        if count < 2:
            raise ValueError("need at least two embedding entries to calibrate the noise")
        total, squares = math.fsum(m.total for m in moments), math.fsum(m.squares for m in moments)
        return math.sqrt(max(0.0, (squares - total * total / count) / (count - 1)))


def subject_embedding_std(subject_embeddings: Sequence[torch.Tensor]) -> float:
    """Std over all entries of the subjects' token embeddings (ROME's `collect_embedding_std`).

    Calibrate per model and per modality: speech-unit embeddings do not spread like text ones.
    """
    if not subject_embeddings:
        raise ValueError("subject_embeddings is empty: need at least one subject to calibrate the noise")
    return EmbeddingMoments.std([EmbeddingMoments.of(e) for e in subject_embeddings])
