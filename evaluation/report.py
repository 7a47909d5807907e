"""`known-speech report`: what produced the numbers, the paper's panels (log and signed AIE, S→T − T→T),
tables with n and intervals where n allows, the prompts; report.md, a self-contained report.html, and
every figure as PNG, PDF and SVG."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from known_speech.tracing.metric import METRICS, metric_label
from known_speech.tracing.plot import plot_trace

from .aggregate import collect_effects, estimate_mean
from .categories import category_labels
from .figures import LOG_FLOOR, KIND_TITLES, Panel, plot_panels
from .report_document import Figure, Table, write_documents
from .report_tables import (MIN_PROMPTS_FOR_INTERVAL, ReportRun, bands_table, control_table, header_table,
                            inverted_score_warning, overview_table, paired_comparison, peaks_table, prompt_table,
                            small_n_warnings)
from .run_folder import RunFolder

__all__ = ["find_runs", "write_report", "Report", "MIN_PROMPTS_FOR_INTERVAL"]

logger = logging.getLogger(__name__)



@dataclass
class Report:
    out_dir: Path
    header: Table | None = None
    warnings: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    statistics: dict = field(default_factory=dict)


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


# -- figures -----------------------------------------------------------------------------------
def _caption(runs: list[ReportRun], scale: str, has_difference: bool) -> str:
    run = runs[0]
    window = run.config.trace.window
    text = (f"Average indirect effect (AIE) of restoring one state at a time in the run with the subject corrupted, "
            f"by token-position category (rows of each panel; grey: no prompt has a token there) and layer. Panel rows: hidden state; MLP and attention "
            f"restored over a window of {window} layers around each layer. Columns: the runs"
            + (", then S→T − T→T on the prompts both recall (dots: the cell's 95 % interval excludes 0)"
               if has_difference else "") + ". Beside each row, n: the prompts with a token of that category (the panel's title counts them all). Score: "
            + "; ".join(sorted({f"{r.config.trace.metric} = {r.value}" for r in runs})) + ". ")
    if scale == "log":
        text += (f"log10 scale as the paper's Figure 2: AIE at or below {LOG_FLOOR:g} is drawn at the floor; negative AIE "
                 f"(restoring lowered the score) is drawn there too, hatched; the signed figure shows its size.")
    else:
        text += "Signed AIE on a diverging scale (red: restoring raises the score, blue: lowers it), one scale per row."
    return text


def _figures(runs: list[ReportRun], differences: list[tuple[str, Panel]], figure_dir: Path, report: Report) -> None:
    """Per metric: the log figure (P(answer) only: log of a log-probability change means nothing), the
    signed one, and subject vs control span."""
    kinds = [kind for kind in KIND_TITLES if any(kind in run.effects.effects for run in runs)]
    metrics = [metric for metric in METRICS if any(run.config.trace.metric == metric for run in runs)]
    for metric in metrics:
        group = [run for run in runs if run.config.trace.metric == metric]
        suffix, named = ("" if metric == "prob" else f"_{metric}"), (f", {metric}" if len(metrics) > 1 else "")
        panels = [Panel(run.label, run.estimates, len(run.effects.known_ids),
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


def _load(run_dir: Path) -> ReportRun:
    folder = RunFolder(run_dir)
    control = collect_effects(run_dir, "control") if folder.item_ids("control") else None
    return ReportRun(folder, folder.settings(), collect_effects(run_dir), control)


def write_report(paths: list[str | Path], out_dir: str | Path | None = None, per_item: int = 0) -> Report:
    """Read every run under `paths` and write report.md, report.html, statistics.json and figures/."""
    run_dirs = find_runs(paths)
    common = os.path.commonpath([str(p) for p in run_dirs])
    out_dir = Path(out_dir) if out_dir is not None else Path(common) / "report"
    figure_dir = out_dir / "figures"
    runs = sorted((_load(run_dir) for run_dir in run_dirs),  # per model and metric: T→T, then S→T per voice
                  key=lambda r: (r.config.model, METRICS.index(r.config.trace.metric), r.config.modality != "text",
                                 r.config.voice_config))
    inverted = [inverted_score_warning(run.label, run.effects) for run in runs]
    report = Report(out_dir, header=header_table(runs, common),
                    warnings=small_n_warnings(runs) + [warning for warning in inverted if warning])
    from known_speech import __version__

    report.statistics["report"] = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "known_speech": __version__, "min_prompts_for_interval": MIN_PROMPTS_FOR_INTERVAL}
    differences: list[tuple[str, Panel]] = []  # (metric, S→T − T→T panel)
    for run in runs:
        estimates = run.estimates
        total = estimate_mean(run.effects.total_effect)
        report.tables += [overview_table(run, total), peaks_table(run), bands_table(run, run.effects)]
        if run.control is not None and len(set(run.control.known_ids) & set(run.effects.known_ids)) >= 2:
            report.tables += [control_table(run), bands_table(run, run.control)]
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
            panel, table, statistics = paired_comparison(text, speech)
            differences.append((text.config.trace.metric, panel))
            report.tables.append(table)
            report.statistics.setdefault("paired", {}).setdefault(text.config.model, statistics)
    _figures(runs, differences, figure_dir, report)
    report.tables += [prompt_table(run) for run in runs]
    for run in runs:
        for known_id in run.effects.known_ids[:per_item]:
            result = run.folder.load(known_id)
            path = figure_dir / "items" / f"{run.folder.path.parent.name}_{run.folder.path.name}_{known_id}.png"
            report.figures.append(Figure(plot_trace(result, path), f"{run.label}, known_id {known_id}",
                                         f"One prompt: {result.metadata.get('prompt', '')!r} → {result.answer!r}; each cell "
                                         f"is the score with that state restored (subject tokens starred)."))
    write_documents(report)
    return report
