"""HuBERT unit tokenizers: a `transformers` HubertModel layer, then the release's quantizer.

Two quantizers exist: Spirit LM's `L11_quantizer_500.pt` is a small learned network (three linear layers,
argmax over 500 units + a CTC blank, blanks replaced by their left neighbour: facebookresearch/spiritlm,
spiritlm/speech_tokenizer/hubert/quantizer_model.py:15-52); TWIST-style releases use k-means centroids.
The HuBERT weights come from a `transformers` folder, or from the release's fairseq-layout checkpoint
(`mhubert_base_25hz.pt`, converted by `hubert_conversion` so the spiritlm package is not needed); both
paths run the same `HubertModel` and give the same units.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .progress import follow_terminal
from .units import MHUBERT_LAYER, UnitProvenance

__all__ = [
    "UnitTokenizer",
    "LinearQuantizer",
    "KMeansQuantizer",
    "load_unit_tokenizer",
    "load_quantizer",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

# Spirit LM's tokenizer cuts audio into 100 s chunks and drops chunks under 80 ms
# (spiritlm/speech_tokenizer/spiritlm_tokenizer.py:165-166, 238-241); each chunk is quantised alone
MAX_CHUNK_SAMPLES = 100 * 16_000
MIN_CHUNK_SAMPLES = 1280
# Spirit LM's blank replacement stops after this many passes (quantizer_model.py:49)
_BLANK_PASSES = 10_000


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of tensors by name, dtype, shape and value: the same weights hash alike in any file format."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class LinearQuantizer(nn.Module):
    """Spirit LM's learned quantizer, read from its release file {model_cfg, model_weight}."""

    kind = "linear"

    def __init__(self, vocab_size: int, dim: int, upstream_dim: int):
        super().__init__()
        self.vocab_size = vocab_size
        mid_dim = upstream_dim - (vocab_size + 1)
        self.encoder = nn.Sequential(
            nn.Linear(dim, dim - mid_dim // 4), nn.LeakyReLU(),
            nn.Linear(dim - mid_dim // 4, dim - mid_dim // 2), nn.LeakyReLU(),
            nn.Linear(dim - mid_dim // 2, vocab_size + 1),
        )

    @classmethod
    def from_release(cls, state: dict) -> "LinearQuantizer":
        config = state["model_cfg"]
        quantizer = cls(int(config["vocab_size"]), int(config["dim"]), int(config["upstream_dim"]))
        quantizer.encoder.load_state_dict(state["model_weight"])
        return quantizer.eval()

    @torch.no_grad()
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(frames, dim) -> (frames,) units; a blank (id vocab_size) takes the unit before it, the first
        frame's the last frame's (a roll over the utterance), as the release's code does."""
        codes = torch.log_softmax(self.encoder(features), dim=-1).argmax(dim=-1)
        passes = 0
        while (codes == self.vocab_size).any() and passes < _BLANK_PASSES:
            blank = codes == self.vocab_size
            codes[blank] = torch.roll(codes, 1)[blank]
            passes += 1
        return codes

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"vocab_size": torch.tensor(self.vocab_size), **self.encoder.state_dict()}


class KMeansQuantizer(nn.Module):
    """Nearest centroid in Euclidean distance (TWIST-style k-means units)."""

    kind = "kmeans"

    def __init__(self, centroids: np.ndarray):
        super().__init__()
        self.register_buffer("centroids", torch.as_tensor(np.asarray(centroids, dtype=np.float32)))

    @torch.no_grad()
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        table = self.centroids
        distances = (features ** 2).sum(1, keepdim=True) - 2 * features @ table.T + (table ** 2).sum(1)
        return distances.argmin(dim=-1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"centroids": self.centroids}


def load_quantizer(path: str | Path) -> LinearQuantizer | KMeansQuantizer:
    """Spirit LM's linear quantizer (.pt with model_cfg/model_weight), k-means centroids as .npy, or a .pt
    holding centroids (a tensor, {cluster_centers, n_clusters}, or a state dict with one 2-D tensor)."""
    path = Path(path)
    if path.suffix == ".npy":
        centroids = np.load(path)
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a pickle of arbitrary objects: refused rather than executed
            raise ValueError(f"{path}: not a tensor checkpoint torch can load safely ({err})") from err
        if isinstance(loaded, dict) and {"model_cfg", "model_weight"} <= loaded.keys():
            return LinearQuantizer.from_release(loaded)
        if isinstance(loaded, dict) and "cluster_centers" in loaded:
            loaded = torch.as_tensor(np.asarray(loaded["cluster_centers"]))
        elif isinstance(loaded, dict):
            matrices = [v for v in loaded.values() if isinstance(v, torch.Tensor) and v.dim() == 2]
            if len(matrices) != 1:
                raise ValueError(f"{path}: neither Spirit LM's linear quantizer (model_cfg, model_weight) "
                                 f"nor k-means centroids")
            loaded = matrices[0]
        centroids = loaded.float().numpy()
    if centroids.ndim != 2:
        raise ValueError(f"{path}: centroids must be (units, dim), got shape {centroids.shape}")
    return KMeansQuantizer(centroids)


@dataclass
class UnitTokenizer:
    """Units of 16 kHz mono audio: HubertModel hidden_states[layer] (1-based, fairseq's output_layer),
    quantised per 100 s chunk, as Spirit LM's tokenizer does."""

    model: nn.Module
    quantizer: LinearQuantizer | KMeansQuantizer
    layer: int
    name: str
    normalize: bool = False
    checkpoint_sha256: str = ""
    sampling_rate: int = 16_000

    def __post_init__(self) -> None:
        config = self.model.config
        if not 1 <= self.layer <= config.num_hidden_layers:
            raise ValueError(f"layer={self.layer}: the HuBERT model has {config.num_hidden_layers} layers")
        if config.do_stable_layer_norm and self.layer == config.num_hidden_layers:
            raise ValueError("the last layer of a pre-norm HuBERT is normalised in transformers but not in fairseq")
        if not self.checkpoint_sha256:
            hubert = {k: v for k, v in self.model.state_dict().items() if k != "masked_spec_embed"}
            digest = hashlib.sha256(f"{weights_sha256(hubert)}|{self.layer}|".encode())
            digest.update(weights_sha256(self.quantizer.tensors()).encode())
            self.checkpoint_sha256 = digest.hexdigest()

    @property
    def rate_hz(self) -> float:
        return self.sampling_rate / float(np.prod(self.model.config.conv_stride))

    @property
    def provenance(self) -> UnitProvenance:
        return UnitProvenance(self.name, self.checkpoint_sha256, self.quantizer.kind, self.layer, self.rate_hz)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def features(self, waveform: np.ndarray) -> torch.Tensor:
        audio = torch.as_tensor(np.asarray(waveform, dtype=np.float32), device=self.device).reshape(1, -1)
        if self.normalize:
            audio = nn.functional.layer_norm(audio, audio.shape[1:])
        return self.model(audio, output_hidden_states=True).hidden_states[self.layer][0].float()

    def encode(self, waveform: np.ndarray) -> np.ndarray:
        """One unit per frame (25 Hz for mHuBERT-base 25 Hz)."""
        waveform = np.asarray(waveform, dtype=np.float32).reshape(-1)
        units = []
        for start in range(0, waveform.size, MAX_CHUNK_SAMPLES):
            chunk = waveform[start:start + MAX_CHUNK_SAMPLES]
            if chunk.size < MIN_CHUNK_SAMPLES:
                continue
            units.append(self.quantizer.to(self.device)(self.features(chunk)).cpu().numpy())
        return np.concatenate(units).astype(np.int64) if units else np.zeros(0, dtype=np.int64)


def _find(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def load_unit_tokenizer(path: str | Path, layer: int = MHUBERT_LAYER, device: str = "cpu") -> UnitTokenizer:
    """A unit tokenizer from a `transformers` HubertModel folder with its quantizer beside it, Spirit LM's
    `speech_tokenizer/hubert_25hz` folder (mhubert_base_25hz.pt + L11_quantizer_500.pt), or a Spirit LM
    checkpoints root holding that folder."""
    folder = Path(path)
    if (folder / "speech_tokenizer" / "hubert_25hz").is_dir():
        folder = folder / "speech_tokenizer" / "hubert_25hz"
    if not folder.is_dir():
        raise ValueError(f"unit tokenizer {str(path)!r}: not a folder (a HubertModel folder or Spirit LM's hubert_25hz)")
    quantizer_file = _find(folder, (f"L{layer}_quantizer_*.pt", "*quantizer*.pt", "*centroids*.npy", "*centroids*.pt",
                                    "*.npy"))
    if quantizer_file is None:
        raise ValueError(f"{folder}: no quantizer (L{layer}_quantizer_500.pt, or k-means *centroids*.npy)")
    quantizer = load_quantizer(quantizer_file)
    if (folder / "config.json").exists():
        from transformers import HubertModel

        follow_terminal()
        model = HubertModel.from_pretrained(str(folder)).eval()
        preprocessor = folder / "preprocessor_config.json"
        normalize = bool(json.loads(preprocessor.read_text()).get("do_normalize")) if preprocessor.exists() else False
        name = folder.name
    else:
        checkpoint_file = _find(folder, ("mhubert*.pt", "hubert*.pt"))
        if checkpoint_file is None:
            raise ValueError(f"{folder}: no HuBERT weights (config.json + weights, or mhubert_base_25hz.pt)")
        from .hubert_conversion import hubert_from_fairseq

        checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
        model, normalize = hubert_from_fairseq(checkpoint)
        name = checkpoint_file.stem
    tokenizer = UnitTokenizer(model.to(device), quantizer.to(device), layer, f"{name}-L{layer}", normalize)
    logger.info("unit tokenizer %s (%s quantizer, %.2f Hz), sha256 %s", tokenizer.name, quantizer.kind,
                tokenizer.rate_hz, tokenizer.checkpoint_sha256[:12])
    return tokenizer
