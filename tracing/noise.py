"""Gaussian noise on the subject's input embeddings (the corrupted run)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .result import TraceOptions

__all__ = ["subject_noise", "corrupt", "subject_embedding_std"]


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


def subject_embedding_std(subject_embeddings: Sequence[torch.Tensor]) -> float:
    """Std over all entries of the subjects' token embeddings (ROME's `collect_embedding_std`).

    Calibrate per model and per modality: speech-unit embeddings do not spread like text ones.
    """
    if not subject_embeddings:
        raise ValueError("subject_embeddings is empty: need at least one subject to calibrate the noise")
    return torch.cat([e.reshape(-1, e.shape[-1]).float() for e in subject_embeddings]).std().item()
