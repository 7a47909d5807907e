"""`known-speech report`: what produced the numbers, the paper's panels (log and signed AIE, S→T − T→T),
tables with n and intervals where n allows, the prompts; report.md, a self-contained report.html, and
every figure as PNG, PDF and SVG."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from known_speech.tracing.metric import METRICS, metric_label
from known_speech.tracing.plot import plot_trace

from .aggregate import Estimate, RunEffects, category_index, collect_effects, estimate_mean, middle_layers, nanmean, paired_difference
from .categories import category_labels
from .figures import LOG_FLOOR, KIND_TITLES, Panel, plot_panels
from .records import filter_rows
from .report_document import Figure, Table, write_documents
from .run_folder import RunFolder, RunSettings

__all__ = ["find_runs", "write_report", "Report", "MIN_PROMPTS_FOR_INTERVAL"]

logger = logging.getLogger(__name__)

MIN_PROMPTS_FOR_INTERVAL = 5  # below this a bootstrap interval is the spread of a handful of values: not shown


@dataclass
class Report:
    out_dir: Path
    header: Table | None = None
    warnings: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    statistics: dict = field(default_factory=dict)


@dataclass
class _Run:
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
        return f"{self.config.model} {direction}" + (f", {metric}" if metric != "prob" else "")

    @property
    def value(self) -> str:
        return metric_label(self.config.trace.metric)

    def subject_effects_on(self, known_ids: list[int]) -> dict[str, np.ndarray]:
        """The subject trace's effects on the prompts given (those the control span has too)."""
        return self.effects.subset([k for k in known_ids if k in self.effects.known_ids]).effects


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders (holding run.json) given directly or anywhere below the given folders."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / "run.json").exists():
            runs.append(path)
        elif path.is_dir():
            runs.extend(sorted(p.parent for p in path.rglob("run.json")))
        else:
            raise ValueError(f"{path}: not a trace run folder (no run.json) nor a folder holding runs")
    if not runs:
        raise ValueError(f"no trace run (run.json) under {', '.join(map(str, paths))}")
    return runs


def _interval(estimate: Estimate, index=()) -> str:
    """Mean [95 % CI]; the mean alone where fewer than MIN_PROMPTS_FOR_INTERVAL prompts stand behind it."""
    mean, low, high, n = estimate.mean[index], estimate.low[index], estimate.high[index], int(np.max(estimate.n[index]))
    if np.isnan(mean):
        return "n/a"
    if n < MIN_PROMPTS_FOR_INTERVAL or np.isnan(low):
        return f"{mean:.4f} (n={n}, no interval)"
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def _n(estimate: Estimate, index=()) -> str:
    return str(int(np.max(estimate.n[index])))


# -- what produced the numbers ----------------------------------------------------------------
def _revision(provenance: dict) -> str:
    """The Hub commit, else the GGUF file and its sha256, else the local path."""
    if provenance.get("revision"):
        return provenance["revision"]
    if provenance.get("gguf_sha256"):
        return f"{provenance['gguf_file']}, sha256 {provenance['gguf_sha256'][:16]}…"
    return provenance.get("path", "not recorded")


def _header(runs: list[_Run], common: str) -> Table:
    """One column per run: the model and its provenance, the settings, sigma and its calibration, n."""
    rows: dict[str, list[str]] = {}

    def put(name: str, value) -> None:
        rows.setdefault(name, []).append("" if value is None else str(value))

    for run in runs:
        settings, config, provenance = run.settings, run.config, run.settings.provenance
        trace = config.trace
        put("run folder", os.path.relpath(run.folder.path, common))
        put("model", provenance.get("model", config.model))
        put("revision / file", _revision(provenance))
        put("model class", f"{provenance.get('model_class', '?')} ({provenance.get('parameters', 0) / 1e6:.1f} M parameters)")
        put("quantisation", provenance.get("quantisation", "none"))
        put("dtype", settings.torch_dtype or config.dtype)
        put("adapter", f"{config.adapter} {json.dumps(config.adapter_options) if config.adapter_options else ''}".strip())
        put("input", "written prompt (T→T)" if config.modality == "text" else f"speech, voice {config.voice_config} (S→T)")
        put("prompts", "every record (--unfiltered)" if config.unfiltered else
            f"those the model recalls (Known-{'t2t' if config.modality == 'text' else 's2t'} filter)")
        put("metric", f"{trace.metric}: {run.value}")
        put("kinds · samples · window", f"{', '.join(trace.kinds)} · {trace.samples} · {trace.window}")
        put("noise σ", f"{settings.noise_std:.4g} = {trace.noise_factor:g} × std of the subjects' input embeddings "
            f"over {settings.calibrated_on or '?'} prompts ({trace.noise_mode} noise)")
        put("n traced (subject · control span)",
            f"{len(run.effects.known_ids)} · {len(run.control.known_ids) if run.control else 0}")
        put("failed", run.folder.failures())
        put("traced on", settings.created or "not recorded")
        put("known-speech · transformers · torch", " · ".join(
            provenance.get(k, "?") for k in ("known_speech", "transformers", "torch")))
    return Table("What produced these numbers", ["", *(run.label for run in runs)],
                 [[name, *values] for name, values in rows.items()])


def _small_n_warnings(runs: list[_Run]) -> list[str]:
    warnings = []
    for run in runs:
        for effects in filter(None, (run.effects, run.control)):
            n = len(effects.known_ids)
            if n < MIN_PROMPTS_FOR_INTERVAL:
                span = " (control span)" if effects.span == "control" else ""
                warnings.append(f"{run.label}{span}: only n = {n} prompt(s). No 95 % interval is shown below "
                                f"n = {MIN_PROMPTS_FOR_INTERVAL}; these numbers describe these prompts, not the model.")
    return warnings


# -- tables ------------------------------------------------------------------------------------
def _overview(run: _Run, total: Estimate) -> Table:
    effects = run.effects
    clean, corrupted = estimate_mean(effects.high), estimate_mean(effects.low)
    return Table(f"{run.label}: clean and corrupted scores", ["quantity", "n", "mean [95% CI]"], [
        [f"{run.value}, clean", _n(clean), _interval(clean)],
        [f"{run.value}, subject corrupted", _n(corrupted), _interval(corrupted)],
        ["total effect (clean − corrupted)", _n(total), _interval(total)],
    ])


def _bands(run: _Run, effects: RunEffects) -> Table:
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
                              [_interval(b, index) if b is not None else "n/a" for b in band_estimates])
    return table


def _peaks(run: _Run, estimates: dict[str, Estimate]) -> Table:
    categories = category_labels()
    return Table(f"{run.label}: where each kind peaks", ["kind", "category", "layer", "n", "AIE [95% CI]"],
                 [[KIND_TITLES[kind], categories[e.peak()[0]], str(e.peak()[1]), _n(e, e.peak()), _interval(e, e.peak())]
                  for kind, e in estimates.items()])


def _control_table(run: _Run) -> Table:
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
        table.rows.append([f"{KIND_TITLES[kind]} AIE, last corrupted token, middle layers", _n(paired),
                           _interval(estimate_mean(values[0])), _interval(estimate_mean(values[1])), _interval(paired)])
    table.rows.append(["total effect", str(len(common)), _interval(estimate_mean(s.total_effect)),
                       _interval(estimate_mean(c.total_effect)), _interval(total)])
    return table


def _prompt_table(run: _Run) -> Table:
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


def _paired(text: _Run, speech: _Run) -> tuple[Panel, Table, dict]:
    common, per_kind, total = paired_difference(text.effects, speech.effects)
    intervals = len(common) >= MIN_PROMPTS_FOR_INTERVAL
    panel = Panel(f"{speech.label.split(' ', 1)[1]} − T→T", per_kind, len(common), category_labels(), difference=True,
                  intervals=intervals)
    table = Table(f"{text.config.model}: paired S→T ({speech.config.voice_config}) − T→T on the prompts both recall",
                  ["quantity", "n", "S→T − T→T [95% CI]"], [["total effect", str(len(common)), _interval(total)]])
    for kind, estimate in per_kind.items():
        peak = np.unravel_index(np.nanargmax(np.abs(np.nan_to_num(estimate.mean))), estimate.mean.shape)
        table.rows.append([f"{KIND_TITLES[kind]}: largest difference ({category_labels()[peak[0]]}, layer {peak[1]})",
                           _n(estimate, peak), _interval(estimate, peak)])
        table.rows.append([f"{KIND_TITLES[kind]}: cells whose interval excludes 0", str(len(common)),
                           f"{int(estimate.excludes_zero().sum())} of {estimate.mean.size}" if intervals else
                           f"not computed (n < {MIN_PROMPTS_FOR_INTERVAL})"])
    statistics = {"known_ids": common, "total_effect": [float(total.mean), float(total.low), float(total.high)]}
    return panel, table, statistics


# -- figures -----------------------------------------------------------------------------------
def _caption(runs: list[_Run], scale: str, has_difference: bool) -> str:
    run = runs[0]
    window = run.config.trace.window
    text = (f"Average indirect effect (AIE) of restoring one state at a time in the run with the subject corrupted, "
            f"by token-position category (rows of each panel; grey: no prompt has a token there) and layer. Panel rows: hidden state; MLP and attention "
            f"restored over a window of {window} layers around each layer. Columns: the runs"
            + (", then S→T − T→T on the prompts both recall (dots: the cell's 95 % interval excludes 0)"
               if has_difference else "") + ". n: prompts behind the panel. Score: "
            + "; ".join(sorted({f"{r.config.trace.metric} = {r.value}" for r in runs})) + ". ")
    if scale == "log":
        text += (f"log10 scale as the paper's Figure 2: AIE at or below {LOG_FLOOR:g}, negative AIE included (restoring "
                 f"lowered the score), is drawn at the floor; the signed figure shows it.")
    else:
        text += "Signed AIE on a diverging scale (red: restoring raises the score, blue: lowers it), one scale per row."
    return text


def _figures(runs: list[_Run], differences: list[tuple[str, Panel]], figure_dir: Path, report: Report) -> None:
    """Per metric: the log figure (P(answer) only: log of a log-probability change means nothing), the
    signed one, and subject vs control span."""
    kinds = [kind for kind in KIND_TITLES if any(kind in run.effects.effects for run in runs)]
    metrics = [metric for metric in METRICS if any(run.config.trace.metric == metric for run in runs)]
    for metric in metrics:
        group = [run for run in runs if run.config.trace.metric == metric]
        suffix, named = ("" if metric == "prob" else f"_{metric}"), (f", {metric}" if len(metrics) > 1 else "")
        panels = [Panel(run.label, {k: estimate_mean(v) for k, v in run.effects.effects.items()}, len(run.effects.known_ids),
                        category_labels()) for run in group]
        panels += [panel for panel_metric, panel in differences if panel_metric == metric]
        value = f"AIE of {metric_label(metric)}"
        has_difference = any(panel.difference for panel in panels)
        if metric == "prob":
            negative = sum(int((p.estimates[k].mean < 0).sum()) for p in panels if not p.difference for k in p.estimates)
            cells = sum(p.estimates[k].mean.size for p in panels if not p.difference for k in p.estimates)
            path = plot_panels(panels, kinds, "log", value, figure_dir / "aie_log.png")
            report.figures.append(Figure(path, "log10 AIE (the paper's Figure 2)", _caption(group, "log", has_difference)
                                         + f" {negative} of {cells} cells are negative."))
        path = plot_panels(panels, kinds, "signed", value, figure_dir / f"aie_signed{suffix}.png")
        report.figures.append(Figure(path, f"signed AIE{named}", _caption(group, "signed", has_difference)))
        controls = [run for run in group if run.control is not None]
        if not controls:
            continue
        columns = []
        for run in controls:
            columns.append(Panel(f"{run.label}, subject", {k: estimate_mean(v) for k, v in
                                                           run.subject_effects_on(run.control.known_ids).items()},
                                 len(run.control.known_ids), category_labels()))
            columns.append(Panel(f"{run.label}, control span", {k: estimate_mean(v) for k, v in run.control.effects.items()},
                                 len(run.control.known_ids), category_labels("control")))
        path = plot_panels(columns, kinds, "signed", value, figure_dir / f"control_span{suffix}.png")
        report.figures.append(Figure(path, f"subject vs control span{named}", (
            "Signed AIE with the subject corrupted (left of each pair) and with the control span corrupted instead "
            "(right: a span of as many text tokens, right after the subject, else right before), on the same prompts. "
            "Rows of the control panels are relative to the corrupted control span.")))


def _load(run_dir: Path) -> _Run:
    folder = RunFolder(run_dir)
    control = collect_effects(run_dir, "control") if folder.item_ids("control") else None
    return _Run(folder, folder.settings(), collect_effects(run_dir), control)


def write_report(paths: list[str | Path], out_dir: str | Path | None = None, per_item: int = 0) -> Report:
    """Read every run under `paths` and write report.md, report.html, statistics.json and figures/."""
    run_dirs = find_runs(paths)
    common = os.path.commonpath([str(p) for p in run_dirs])
    out_dir = Path(out_dir) if out_dir is not None else Path(common) / "report"
    figure_dir = out_dir / "figures"
    runs = sorted((_load(run_dir) for run_dir in run_dirs),  # per model and metric: T→T, then S→T per voice
                  key=lambda r: (r.config.model, METRICS.index(r.config.trace.metric), r.config.modality != "text",
                                 r.config.voice_config))
    report = Report(out_dir, header=_header(runs, common), warnings=_small_n_warnings(runs))
    from known_speech import __version__

    report.statistics["report"] = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "known_speech": __version__, "min_prompts_for_interval": MIN_PROMPTS_FOR_INTERVAL}
    differences: list[tuple[str, Panel]] = []  # (metric, S→T − T→T panel)
    for run in runs:
        estimates = {kind: estimate_mean(values) for kind, values in run.effects.effects.items()}
        total = estimate_mean(run.effects.total_effect)
        report.tables += [_overview(run, total), _peaks(run, estimates), _bands(run, run.effects)]
        if run.control is not None and len(set(run.control.known_ids) & set(run.effects.known_ids)) >= 2:
            report.tables += [_control_table(run), _bands(run, run.control)]
        report.statistics[str(run.folder.path)] = {
            "label": run.label, "model": run.config.model, "modality": run.config.modality,
            "voice_config": run.config.voice_config, "metric": run.config.trace.metric, "prompts": len(run.effects.known_ids),
            "noise_std": run.settings.noise_std, "provenance": run.settings.provenance,
            "total_effect": [float(total.mean), float(total.low), float(total.high)],
            "aie": {kind: {"mean": e.mean.tolist(), "low": e.low.tolist(), "high": e.high.tolist(), "n": e.n.tolist()}
                    for kind, e in estimates.items()},
            "peaks": {kind: {"category": category_labels()[e.peak()[0]], "layer": e.peak()[1], "aie": float(e.mean[e.peak()])}
                      for kind, e in estimates.items()},
        }
    for text in (r for r in runs if r.config.modality == "text"):
        for speech in (r for r in runs if r.config.modality == "speech" and r.config.model == text.config.model
                       and r.config.trace.metric == text.config.trace.metric):
            if len(set(text.effects.known_ids) & set(speech.effects.known_ids)) < 2:
                report.warnings.append(f"{speech.label} and {text.label} share fewer than 2 prompts: no paired difference")
                continue
            panel, table, statistics = _paired(text, speech)
            differences.append((text.config.trace.metric, panel))
            report.tables.append(table)
            report.statistics.setdefault("paired", {}).setdefault(text.config.model, statistics)
    _figures(runs, differences, figure_dir, report)
    report.tables += [_prompt_table(run) for run in runs]
    for run in runs:
        for known_id in run.effects.known_ids[:per_item]:
            result = run.folder.load(known_id)
            path = figure_dir / "items" / f"{run.folder.path.parent.name}_{run.folder.path.name}_{known_id}.png"
            report.figures.append(Figure(plot_trace(result, path), f"{run.label}, known_id {known_id}",
                                         f"One prompt: {result.metadata.get('prompt', '')!r} → {result.answer!r}; each cell "
                                         f"is the score with that state restored (subject tokens starred)."))
    write_documents(report)
    return report
