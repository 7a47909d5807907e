"""AIE by kind x position category x layer, with bootstrap intervals over prompts, paired comparisons
(T→T vs S→T on the facts in both filters) and the control span (subject localisation against chance)."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap

from .categories import CATEGORIES, category_effects
from .run_config import TraceRunConfig
from .run_folder import RunFolder, Span, position_map

__all__ = ["RunEffects", "Estimate", "collect_effects", "estimate_mean", "paired_difference", "middle_layers",
           "category_index", "nanmean"]

N_RESAMPLES = 2000
SEED = 0


@dataclass
class RunEffects:
    """Per-item effects of one run: `effects[kind]` is (items, categories, layers) of IE = P(restored) - P(corrupted)."""

    run_dir: Path
    config: TraceRunConfig
    span: Span  # "items" (subject corrupted) or "control"
    known_ids: list[int]
    effects: dict[str, np.ndarray]
    high: np.ndarray  # (items,) clean P(answer)
    low: np.ndarray  # (items,) corrupted P(answer)
    noise_std: float
    engines: tuple[str, ...] = ()  # how the items were computed (TraceResult metadata "engine"), each once

    @property
    def total_effect(self) -> np.ndarray:
        return self.high - self.low

    def subset(self, known_ids: list[int]) -> "RunEffects":
        rows = [self.known_ids.index(known_id) for known_id in known_ids]
        return RunEffects(self.run_dir, self.config, self.span, list(known_ids),
                          {kind: table[rows] for kind, table in self.effects.items()},
                          self.high[rows], self.low[rows], self.noise_std, self.engines)


def collect_effects(run_dir: str | Path, span: Span = "items") -> RunEffects:
    """Read every cached item of a run folder and average its effects into the six categories."""
    folder = RunFolder(run_dir)
    settings = folder.settings()
    kinds = settings.config.trace.kinds
    known_ids = folder.item_ids(span)
    if not known_ids:
        raise ValueError(f"{folder.path}/{span} holds no traced item")
    effects: dict[str, list[np.ndarray]] = {kind: [] for kind in kinds}
    high, low, engines = [], [], set()
    for known_id in known_ids:
        result = folder.load(known_id, span)
        engines.add(engine_description(result.metadata.get("engine")))
        positions = position_map(result)
        for kind in kinds:
            effects[kind].append(category_effects(result.indirect_effect(kind), positions.text_token_of_position,
                                                  positions.corrupted_text_range, len(positions.text_tokens)))
        high.append(result.high_score)
        low.append(result.low_score)
    return RunEffects(folder.path, settings.config, span, known_ids, {k: np.stack(v) for k, v in effects.items()},
                      np.array(high), np.array(low), settings.noise_std, tuple(sorted(engines)))


def engine_description(engine: dict | None) -> str:
    """'eager, kernels torch, shared-prefix attention, cuda:0' from a result's metadata["engine"]."""
    if not engine:
        return "not recorded"
    attention = "shared-prefix attention" if engine.get("shared_prefix_attention") else "per-row K/V copies"
    return (f"{'compiled' if engine.get('compiled') else 'eager'}, kernels {engine.get('kernels', '?')}, {attention}, "
            f"{engine.get('device', '?')}")


@dataclass
class Estimate:
    """Mean over prompts with a percentile-bootstrap 95 % interval, cell by cell; n = prompts per cell."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray

    def peak(self) -> tuple[int, ...]:
        """Index of the largest mean (for a categories x layers table: category, layer)."""
        return tuple(int(i) for i in np.unravel_index(np.nanargmax(self.mean), self.mean.shape))

    def excludes_zero(self) -> np.ndarray:
        return (self.low > 0) | (self.high < 0)


@contextmanager
def _quiet():
    """All-NaN cells (a category absent from every resampled prompt) are expected: no warning for them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def nanmean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    with _quiet():
        return np.nanmean(values, axis=axis)


def estimate_mean(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Estimate:
    """Mean over axis 0 (prompts; NaN = the category is absent from that prompt) with a bootstrap CI."""
    values = np.asarray(values, dtype=float)
    flat = values.reshape(len(values), -1)
    mean = nanmean(flat, axis=0)
    n = (~np.isnan(flat)).sum(axis=0)
    low, high = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    usable = n >= 2
    if usable.any() and len(values) >= 2:
        with _quiet():
            result = bootstrap((flat[:, usable],), nanmean, axis=0, vectorized=True, n_resamples=n_resamples,
                               method="percentile", confidence_level=0.95, random_state=np.random.default_rng(seed),
                               batch=max(1, 2_000_000 // max(1, flat.size)))
        low[usable], high[usable] = result.confidence_interval.low, result.confidence_interval.high
    shape = values.shape[1:]
    return Estimate(mean.reshape(shape), low.reshape(shape), high.reshape(shape), n.reshape(shape))


def paired_difference(first: RunEffects, second: RunEffects) -> tuple[list[int], dict[str, Estimate], Estimate]:
    """second - first on the prompts both runs traced: per kind (categories x layers), and the total effect."""
    common = sorted(set(first.known_ids) & set(second.known_ids))
    if len(common) < 2:
        raise ValueError(f"{first.run_dir} and {second.run_dir} share {len(common)} prompt(s); need at least 2")
    a, b = first.subset(common), second.subset(common)
    kinds = [kind for kind in a.effects if kind in b.effects]
    if any(a.effects[k].shape[2] != b.effects[k].shape[2] for k in kinds):
        raise ValueError("the two runs have different layer counts; a paired comparison needs the same model")
    per_kind = {kind: estimate_mean(b.effects[kind] - a.effects[kind]) for kind in kinds}
    return common, per_kind, estimate_mean(b.total_effect - a.total_effect)


def middle_layers(num_layers: int) -> slice:
    """The middle half of the layers, where ROME finds the MLP effect at the last subject token."""
    return slice(num_layers // 4, num_layers - num_layers // 4)


def category_index(name: str) -> int:
    return CATEGORIES.index(name)

