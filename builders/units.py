"""HuBERT speech units: a `transformers` HubertModel layer, quantised to the nearest k-means centroid.

SpiritLM and TWIST feed the LM mHuBERT-base 25 Hz layer-11 units (500 centroids), de-duplicated:
consecutive repeats collapse to one LM position, so a subject's frame span must be mapped to
de-duplicated positions before it can be corrupted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "HubertUnitTokenizer",
    "deduplicate",
    "dedup_span",
    "load_centroids",
    "find_centroids",
    "MHUBERT_LAYER",
    "MHUBERT_RATE_HZ",
]

logger = logging.getLogger(__name__)

# SpiritLM / TWIST units: mHuBERT-base 25 Hz (converted on the Hub as slprl/mhubert-base-25hz), layer 11, 500 centroids
MHUBERT_LAYER = 11
MHUBERT_RATE_HZ = 25.0


def load_centroids(path: str | Path) -> np.ndarray:
    """(units, dim) float32 centroids from .npy, or from a .pt holding a tensor or a dict with one 2-D tensor
    (SpiritLM's `L11_quantizer_500.pt` keeps its codebook in a state dict)."""
    path = Path(path)
    if path.suffix == ".npy":
        centroids = np.load(path)
    elif path.suffix in (".pt", ".pth", ".bin"):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(loaded, dict):
            matrices = [v for v in loaded.values() if isinstance(v, torch.Tensor) and v.dim() == 2]
            if len(matrices) != 1:
                raise ValueError(f"{path}: expected one 2-D centroid tensor in the state dict, found {len(matrices)}")
            loaded = matrices[0]
        centroids = loaded.float().numpy()
    else:
        raise ValueError(f"{path}: centroids must be .npy or .pt")
    if centroids.ndim != 2:
        raise ValueError(f"{path}: centroids must be (units, dim), got shape {centroids.shape}")
    return centroids.astype(np.float32)


def find_centroids(folder: str | Path, layer: int = MHUBERT_LAYER) -> Path:
    """The k-means centroids beside a HubertModel: SpiritLM's L<layer>_quantizer_*.pt, or *centroids*.npy/.pt."""
    folder = Path(folder)
    for pattern in (f"L{layer}_quantizer_*.pt", "*centroids*.npy", "*centroids*.pt", "*.npy"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise ValueError(f"{folder}: no k-means centroids (L{layer}_quantizer_500.pt or *centroids*.npy)")


def deduplicate(units: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(de-duplicated units, frame index where each run starts)."""
    units = np.asarray(units)
    if units.size == 0:
        return units.copy(), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], units[1:] != units[:-1]]))
    return units[starts], starts


def dedup_span(run_starts: np.ndarray, frame_start: int, frame_end: int, num_frames: int) -> tuple[int, int]:
    """[start, end) of the de-duplicated positions whose frame runs overlap frames [frame_start, frame_end)."""
    if frame_end <= frame_start:
        raise ValueError(f"empty frame span [{frame_start}, {frame_end})")
    run_ends = np.append(run_starts[1:], num_frames)
    overlapping = np.flatnonzero((run_starts < frame_end) & (run_ends > frame_start))
    if overlapping.size == 0:
        raise ValueError(f"frame span [{frame_start}, {frame_end}) lies outside the {num_frames} frames")
    return int(overlapping[0]), int(overlapping[-1]) + 1


@dataclass
class HubertUnitTokenizer:
    """Units from layer `layer` of a HubertModel (1-based as in fairseq: hidden_states[layer])."""

    model: torch.nn.Module
    centroids: torch.Tensor  # (units, dim)
    layer: int
    rate_hz: float
    name: str = "hubert"
    sampling_rate: int = 16_000

    @classmethod
    def from_pretrained(
        cls, model_name_or_path: str | Path, centroids: str | Path, layer: int = MHUBERT_LAYER,
        rate_hz: float = MHUBERT_RATE_HZ,
        name: str | None = None, device: str = "cpu",
    ) -> "HubertUnitTokenizer":
        from transformers import HubertModel

        model = HubertModel.from_pretrained(str(model_name_or_path)).to(device).eval()
        if not 1 <= layer <= model.config.num_hidden_layers:
            raise ValueError(f"layer={layer}: {model_name_or_path} has {model.config.num_hidden_layers} layers")
        table = torch.from_numpy(load_centroids(centroids)).to(device)
        if table.shape[1] != model.config.hidden_size:
            raise ValueError(f"centroids have dim {table.shape[1]}, the model's hidden size is {model.config.hidden_size}")
        return cls(model, table, layer, rate_hz, name or Path(str(model_name_or_path)).name)

    @property
    def num_units(self) -> int:
        return int(self.centroids.shape[0])

    @torch.no_grad()
    def features(self, waveform: np.ndarray) -> torch.Tensor:
        audio = torch.as_tensor(np.asarray(waveform, dtype=np.float32), device=self.centroids.device)
        outputs = self.model(audio.reshape(1, -1), output_hidden_states=True)
        return outputs.hidden_states[self.layer][0]

    def encode(self, waveform: np.ndarray) -> np.ndarray:
        """One unit per frame of 16 kHz mono audio: the nearest centroid in Euclidean distance."""
        features = self.features(waveform).float()
        distances = torch.cdist(features, self.centroids.float())
        return distances.argmin(dim=-1).cpu().numpy().astype(np.int64)
