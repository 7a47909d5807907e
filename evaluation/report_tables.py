"""The report's tables: what produced the numbers (one column per run), clean and corrupted scores, AIE by
layer band and category, peaks, subject vs control span, S→T − T→T on shared prompts, the traced prompts.
Every number carries its n; an interval only from MIN_PROMPTS_FOR_INTERVAL prompts on."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass

import numpy as np

from known_speech.tracing.metric import metric_label

from .aggregate import Estimate, RunEffects, category_index, estimate_mean, middle_layers, nanmean, paired_difference
from .categories import category_labels
from .figures import KIND_TITLES, Panel
from .records import filter_rows
from .report_document import Table
from .run_folder import RunFolder, RunSettings

__all__ = ["MIN_PROMPTS_FOR_INTERVAL", "ReportRun", "bands_table", "control_table", "header_table", "interval",
           "overview_table", "inverted_score_warning", "paired_comparison", "peaks_table", "prompt_table", "small_n_warnings"]

MIN_PROMPTS_FOR_INTERVAL = 5  # below this a bootstrap interval is the spread of a handful of values: not shown


def selection_label(config) -> str:
    """The recall filter that selected a run's prompts: Known-t2t, Known-s2t or Known-both, `(subject)` where only
    the subject-dependent facts were traced."""
    selecting = getattr(config, "recalled_in", None) or config.modality
    subject = " (subject)" if getattr(config, "subject_dependent", False) else ""
    return "Known-" + {"text": "t2t", "speech": "s2t"}.get(selecting, selecting) + subject


@dataclass
class ReportRun:
    """One run folder as the report reads it."""

    folder: RunFolder
    settings: RunSettings
    effects: RunEffects
    control: RunEffects | None

    @property
    def config(self):
        return self.settings.config

    @property
    def label(self) -> str:
        direction = "T→T" if self.config.modality == "text" else f"S→T {self.config.voice_config}"
        metric = self.config.trace.metric
        selected = getattr(self.config, "recalled_in", None) not in (None, self.config.modality) or \
            getattr(self.config, "subject_dependent", False)
        return (f"{self.config.model} {direction}" + (f" ({selection_label(self.config)})" if selected else "")
                + (f", {metric}" if metric != "prob" else ""))

    @property
    def value(self) -> str:
        return metric_label(self.config.trace.metric)

    @functools.cached_property
    def estimates(self) -> dict[str, Estimate]:
        """Mean AIE per kind and its bootstrap interval, computed once: tables, figures and statistics read it."""
        return {kind: estimate_mean(values) for kind, values in self.effects.effects.items()}

    def subject_effects_on(self, known_ids: list[int]) -> dict[str, np.ndarray]:
        """The subject trace's effects on the prompts given (those the control span has too)."""
        return self.effects.subset([k for k in known_ids if k in self.effects.known_ids]).effects


def interval(estimate: Estimate, index=()) -> str:
    """Mean [95 % CI]; the mean alone where fewer than MIN_PROMPTS_FOR_INTERVAL prompts stand behind it."""
    mean, low, high, n = estimate.mean[index], estimate.low[index], estimate.high[index], int(np.max(estimate.n[index]))
    if np.isnan(mean):
        return "n/a"
    if n < MIN_PROMPTS_FOR_INTERVAL or np.isnan(low):
        return f"{mean:.4f} (n={n}, no interval)"
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def count(estimate: Estimate, index=()) -> str:
    return str(int(np.max(estimate.n[index])))


# -- what produced the numbers ----------------------------------------------------------------
def _revision(provenance: dict) -> str:
    """The Hub commit, else the GGUF file and its sha256 (and a delta's adapter sha256 on it), else the local
    path."""
    if provenance.get("revision"):
        return provenance["revision"]
    if provenance.get("gguf_sha256"):
        weights = f"{provenance['gguf_file']}, sha256 {provenance['gguf_sha256'][:16]}…"
        delta = provenance.get("delta")
        if delta and "adapter_model.safetensors" in delta.get("files", {}):
            weights += f" + delta {delta['name']}, adapter sha256 {delta['files']['adapter_model.safetensors'][:16]}…"
        return weights
    return provenance.get("path", "not recorded")


def header_table(runs: list[ReportRun], common: str) -> Table:
    """One column per run: the model and its provenance, the settings, sigma and its calibration, n."""
    rows: dict[str, list[str]] = {}

    def put(name: str, value) -> None:
        rows.setdefault(name, []).append("" if value is None else str(value))

    for run in runs:
        settings, config, provenance = run.settings, run.config, run.settings.provenance
        trace = config.trace
        relative = os.path.relpath(run.folder.path, common)
        put("run folder", f"{run.folder.path.parent.name}/{run.folder.path.name}" if relative == "." else relative)
        put("model", provenance.get("model", config.model))
        put("revision / file", _revision(provenance))
        put("model class", f"{provenance.get('model_class', '?')} ({provenance.get('parameters', 0) / 1e6:.1f} M parameters)")
        put("quantisation", provenance.get("quantisation", "none"))
        put("dtype", settings.torch_dtype or config.dtype)
        put("adapter", f"{config.adapter} {json.dumps(config.adapter_options) if config.adapter_options else ''}".strip())
        put("input", "written prompt (T→T)" if config.modality == "text" else f"speech, voice {config.voice_config} (S→T)")
        put("prompts", "every record (--unfiltered)" if config.unfiltered else
            f"those the model recalls ({selection_label(config)} filter)")
        put("metric", f"{trace.metric}: {run.value}")
        put("kinds · samples · window", f"{', '.join(trace.kinds)} · {trace.samples} · {trace.window}")
        put("noise σ", f"{settings.noise_std:.4g} = {trace.noise_factor:g} × std of the subjects' input embeddings "
            f"over {settings.calibrated_on or '?'} prompts ({trace.noise_mode} noise)")
        put("n traced (subject · control span)",
            f"{len(run.effects.known_ids)} · {len(run.control.known_ids) if run.control else 0}")
        put("failed", run.folder.failures())
        put("traced on", settings.created or "not recorded")
        put("engine", "; ".join(run.effects.engines) or "not recorded")
        put("known-speech · transformers · torch", " · ".join(
            provenance.get(k, "?") for k in ("known_speech", "transformers", "torch")))
    return Table("What produced these numbers", ["", *(run.label for run in runs)],
                 [[name, *values] for name, values in rows.items()])


def small_n_warnings(runs: list[ReportRun]) -> list[str]:
    warnings = []
    for run in runs:
        for effects in filter(None, (run.effects, run.control)):
            n = len(effects.known_ids)
            if n < MIN_PROMPTS_FOR_INTERVAL:
                span = " (control span)" if effects.span == "control" else ""
                warnings.append(f"{run.label}{span}: only n = {n} prompt(s). No 95 % interval is shown below "
                                f"n = {MIN_PROMPTS_FOR_INTERVAL}; these numbers describe these prompts, not the model.")
    return warnings


def inverted_score_warning(label: str, effects: RunEffects) -> str | None:
    """The prompts whose corrupted score is above the clean one: corrupting the subject should lower it, so
    these point at a bad noise sigma or subject, and their effects are not the subject's."""
    inverted = [known_id for known_id, high, low in zip(effects.known_ids, effects.high, effects.low) if low > high]
    if not inverted:
        return None
    listed = ", ".join(map(str, inverted[:10])) + (", …" if len(inverted) > 10 else "")
    return (f"{label}: {len(inverted)} of {len(effects.known_ids)} prompt(s) have a corrupted score above the clean one "
            f"(known_id {listed}): a sign of a bad noise σ ({effects.noise_std:.3g}) or of a bad subject span.")


# -- tables ------------------------------------------------------------------------------------
def overview_table(run: ReportRun, total: Estimate) -> Table:
    effects = run.effects
    clean, corrupted = estimate_mean(effects.high), estimate_mean(effects.low)
    return Table(f"{run.label}: clean and corrupted scores", ["quantity", "n", "mean [95% CI]"], [
        [f"{run.value}, clean", count(clean), interval(clean)],
        [f"{run.value}, subject corrupted", count(corrupted), interval(corrupted)],
        ["total effect (clean − corrupted)", count(total), interval(total)],
    ])


def bands_table(run: ReportRun, effects: RunEffects) -> Table:
    """AIE per kind and category, averaged over early / middle / late layers; n per row."""
    kind0 = next(iter(effects.effects.values()))
    layers = kind0.shape[2]
    middle = middle_layers(layers)
    bands = [slice(0, middle.start), middle, slice(middle.stop, layers)]
    span = " (control span corrupted)" if effects.span == "control" else ""
    table = Table(f"{run.label}{span}: AIE by category, mean over layer bands",
                  ["kind", "category", "n", f"early (0–{middle.start - 1})", f"middle ({middle.start}–{middle.stop - 1})",
                   f"late ({middle.stop}–{layers - 1})"], [],
                  "AIE = score with the state restored − score corrupted, averaged over prompts. Bands: the middle "
                  "half of the layers and the quarters either side. Intervals: percentile bootstrap over prompts.")
    for kind, per_item in effects.effects.items():
        band_estimates = [estimate_mean(nanmean(per_item[:, :, band], axis=2)) if band.stop > band.start else None
                          for band in bands]
        for index, category in enumerate(category_labels(effects.span)):
            n = int((~np.isnan(per_item[:, index]).all(axis=1)).sum())
            table.rows.append([KIND_TITLES[kind], category, str(n)] +
                              [interval(b, index) if b is not None else "n/a" for b in band_estimates])
    return table


def peaks_table(run: ReportRun) -> Table:
    categories = category_labels()
    return Table(f"{run.label}: where each kind peaks", ["kind", "category", "layer", "n", "AIE [95% CI]"],
                 [[KIND_TITLES[kind], categories[e.peak()[0]], str(e.peak()[1]), count(e, e.peak()), interval(e, e.peak())]
                  for kind, e in run.estimates.items()])


def control_table(run: ReportRun) -> Table:
    """Subject vs control span on the same prompts: the last corrupted token, middle layers, the total effect."""
    subject, control = run.effects, run.control
    common, per_kind, total = paired_difference(control, subject)
    last = category_index("last subject token")
    table = Table(f"{run.label}: subject vs control span", ["quantity", "n", "subject", "control", "subject − control [95% CI]"],
                  [], "Control: a span of as many text tokens as the subject, right after it (else right before), "
                      "corrupted instead of the subject. Subject localisation is real where the difference's interval "
                      "excludes zero.")
    s, c = subject.subset(common), control.subset(common)
    for kind, difference in per_kind.items():
        middle = middle_layers(difference.mean.shape[1])
        values = [nanmean(effects.effects[kind][:, last, middle], axis=1) for effects in (s, c)]
        paired = estimate_mean(values[0] - values[1])
        table.rows.append([f"{KIND_TITLES[kind]} AIE, last corrupted token, middle layers", count(paired),
                           interval(estimate_mean(values[0])), interval(estimate_mean(values[1])), interval(paired)])
    table.rows.append(["total effect", str(len(common)), interval(estimate_mean(s.total_effect)),
                       interval(estimate_mean(c.total_effect)), interval(total)])
    return table


def prompt_table(run: ReportRun) -> Table:
    """Every traced prompt: the attribute, the model's own answer and its match (from the recall filter)."""
    config, effects = run.config, run.effects
    rows = filter_rows(config.dataset, config.model, config.modality, config.voice_config) or {}
    table = Table(f"{run.label}: the {len(effects.known_ids)} traced prompts",
                  ["known_id", "prompt", "attribute", "model's answer", "match", "clean", "corrupted"], [],
                  f"clean / corrupted: {run.value} with the subject clean / corrupted (mean over noise samples). "
                  f"Answer and match: the model's greedy answer in the recall filter"
                  f"{'' if rows else ' (no filter found in ' + str(config.dataset) + ')'}.")
    for position, known_id in enumerate(effects.known_ids):
        result_meta = run.folder.load(known_id).metadata
        row = rows.get(known_id, {})
        table.rows.append([str(known_id), result_meta.get("prompt", ""), result_meta.get("attribute", ""),
                           row.get("answer", "n/a"), row.get("match", "n/a"),
                           f"{effects.high[position]:.4f}", f"{effects.low[position]:.4f}"])
    return table


def paired_comparison(text: ReportRun, speech: ReportRun) -> tuple[Panel, Table, dict]:
    common, per_kind, total = paired_difference(text.effects, speech.effects)
    intervals = len(common) >= MIN_PROMPTS_FOR_INTERVAL
    panel = Panel(f"{speech.label.split(' ', 1)[1]} − T→T", per_kind, len(common), category_labels(), difference=True,
                  intervals=intervals)
    table = Table(f"{text.config.model}: paired S→T ({speech.config.voice_config}) − T→T on the prompts both recall",
                  ["quantity", "n", "S→T − T→T [95% CI]"], [["total effect", str(len(common)), interval(total)]])
    for kind, estimate in per_kind.items():
        peak = np.unravel_index(np.nanargmax(np.abs(np.nan_to_num(estimate.mean))), estimate.mean.shape)
        table.rows.append([f"{KIND_TITLES[kind]}: largest difference ({category_labels()[peak[0]]}, layer {peak[1]})",
                           count(estimate, peak), interval(estimate, peak)])
        table.rows.append([f"{KIND_TITLES[kind]}: cells whose interval excludes 0", str(len(common)),
                           f"{int(estimate.excludes_zero().sum())} of {estimate.mean.size}" if intervals else
                           f"not computed (n < {MIN_PROMPTS_FOR_INTERVAL})"])
    statistics = {"known_ids": common, "total_effect": [float(total.mean), float(total.low), float(total.high)]}
    return panel, table, statistics
