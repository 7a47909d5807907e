"""Trace results: one dataclass with the scores and every setting that produced them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from known_speech.atomic import atomic_path

from .metric import METRICS, Metric

__all__ = ["Kind", "KINDS", "TraceOptions", "TraceResult"]

Kind = Literal["hidden", "mlp", "attn"]
KINDS: tuple[Kind, ...] = ("hidden", "mlp", "attn")


@dataclass(frozen=True)
class TraceOptions:
    """Settings of a causal trace (semantics of ROME's causal trace).

    noise_std: explicit sigma of the Gaussian noise on the subject's input embeddings; when None,
    sigma = noise_factor * `embedding_std` (given to the engine, or the std of this prompt's subject
    embeddings). noise_mode "rome" draws numpy RandomState(seed).randn(samples, n_subject, d) as ROME
    does (its seed: 1, the default); "torch" draws from torch.Generator seeded with `seed`. window: MLP/attention restorations
    cover layers [l - window//2, l + ceil(window/2)) clipped to the model. max_batch_tokens bounds rows x
    positions per forward (memory); None picks it from free GPU memory, or 16384 on CPU.
    """

    kinds: tuple[Kind, ...] = KINDS
    samples: int = 10
    noise_factor: float = 3.0
    noise_std: float | None = None
    noise_mode: Literal["rome", "torch"] = "rome"
    seed: int = 1
    window: int = 10
    token_range: tuple[int, ...] | None = None
    max_batch_tokens: int | None = None
    self_check: bool = True
    metric: Metric = "prob"  # tracing.metric: prob (ROME), logprob, or attribute (the whole attribute's log-prob)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"kinds={self.kinds!r}: choose from {KINDS}")
        if self.samples < 1:
            raise ValueError(f"samples={self.samples}: need at least 1")
        if self.window < 1:
            raise ValueError(f"window={self.window}: need at least 1")
        if self.noise_mode not in ("rome", "torch"):
            raise ValueError(f"noise_mode={self.noise_mode!r}: choose 'rome' or 'torch'")
        if self.noise_std is not None and self.noise_std < 0:
            raise ValueError(f"noise_std={self.noise_std}: must be >= 0")
        if self.metric not in METRICS:
            raise ValueError(f"metric={self.metric!r}: choose from {METRICS}")


@dataclass
class TraceResult:
    """Scores are the metric (options.metric: P(answer) at the last position by default), averaged over
    noise samples; `answer_ids` are all the tokens scored (one, but for the attribute metric).

    scores[kind] has shape (positions, layers); entries outside `token_range` are NaN.
    Indirect effect = scores - low_score. `warnings`: what makes the trace doubtful (a corrupted score above
    the clean one, a subject that occurs more than once in the prompt), each in one line.
    """

    tokens: list[str]
    subject_range: tuple[int, int]  # [start, end) positions that were corrupted
    answer: str
    answer_id: int
    high_score: float  # clean run
    low_score: float  # corrupted run, nothing restored
    scores: dict[str, np.ndarray]
    noise_std: float
    options: TraceOptions
    model_name: str = ""
    dtype: str = ""
    input_ids: list[int] | None = None
    seconds: float = 0.0
    answer_ids: list[int] | None = None
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return next(iter(self.scores.values())).shape[1]

    def indirect_effect(self, kind: Kind) -> np.ndarray:
        return self.scores[kind] - self.low_score

    def plot(self, path: str | Path | None = None, kinds: tuple[Kind, ...] | None = None):
        """Heatmaps of every kind (tokens x layers): written to `path` (PNG, PDF or SVG), or returned as a
        matplotlib figure."""
        from .plot import plot_trace

        return plot_trace(self, path, kinds)

    def peak(self, kind: Kind) -> tuple[int, int, float]:
        """(position, layer, score) of the largest score of `kind`."""
        table = self.scores[kind]
        position, layer = np.unravel_index(np.nanargmax(table), table.shape)
        return int(position), int(layer), float(table[position, layer])

    def save(self, path: str | Path) -> Path:
        """Write an .npz (scores as arrays, the rest as JSON), atomically."""
        path = Path(path)
        header = {
            "tokens": self.tokens,
            "subject_range": list(self.subject_range),
            "answer": self.answer,
            "answer_id": self.answer_id,
            "high_score": self.high_score,
            "low_score": self.low_score,
            "noise_std": self.noise_std,
            "options": asdict(self.options),
            "model_name": self.model_name,
            "dtype": self.dtype,
            "input_ids": self.input_ids,
            "seconds": self.seconds,
            "answer_ids": self.answer_ids,
            "metadata": self.metadata,
            "warnings": self.warnings,
        }
        arrays = {f"scores_{kind}": table for kind, table in self.scores.items()}
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, header=np.array(json.dumps(header)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TraceResult":
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            scores = {key.removeprefix("scores_"): data[key] for key in data.files if key.startswith("scores_")}
        options = header.pop("options")
        options["kinds"] = tuple(options["kinds"])
        if options["token_range"] is not None:
            options["token_range"] = tuple(options["token_range"])
        header["subject_range"] = tuple(header["subject_range"])
        return cls(scores=scores, options=TraceOptions(**options), **header)
