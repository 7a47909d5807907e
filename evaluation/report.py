"""`known-speech report`: figures, tables with intervals, report.md and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from known_speech.atomic import atomic_write_text
from known_speech.tracing.plot import plot_trace

from .aggregate import (
    Estimate,
    RunEffects,
    category_index,
    collect_effects,
    estimate_mean,
    middle_layers,
    nanmean,
    paired_difference,
)
from .categories import CATEGORIES
from .figures import plot_aie_heatmaps, plot_difference
from .run_folder import RunFolder

__all__ = ["find_runs", "write_report", "Report"]

logger = logging.getLogger(__name__)


@dataclass
class _Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines + ([f"\n{self.note}"] if self.note else [])) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self.rows)
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"<h3>{html.escape(self.title)}</h3><table><tr>{head}</tr>{body}</table>{note}"


@dataclass
class Report:
    out_dir: Path
    tables: list[_Table] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
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


def _interval(estimate: Estimate, index) -> str:
    mean, low, high = estimate.mean[index], estimate.low[index], estimate.high[index]
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]" if not np.isnan(low) else f"{mean:.4f}"


def _run_tables(run: RunEffects, estimates: dict[str, Estimate], total: Estimate) -> list[_Table]:
    layers = next(iter(estimates.values())).mean.shape[1]
    middle = middle_layers(layers)
    overview = _Table(
        f"{run.label}: {len(run.known_ids)} prompts",
        ["quantity", "mean [95% CI]"],
        [["P(answer), clean", _interval(estimate_mean(run.high), ())],
         ["P(answer), subject corrupted", _interval(estimate_mean(run.low), ())],
         ["total effect (clean − corrupted)", _interval(total, ())],
         ["noise σ", f"{run.noise_std:.4g}"]],
    )
    peaks = _Table(
        f"{run.label}: where each kind peaks",
        ["kind", "category", "layer", "AIE [95% CI]"],
        [[kind, CATEGORIES[e.peak()[0]], str(e.peak()[1]), _interval(e, e.peak())] for kind, e in estimates.items()],
    )
    bands = _Table(
        f"{run.label}: AIE by category, mean over layer bands",
        ["kind", "category", f"early (0–{middle.start - 1})", f"middle ({middle.start}–{middle.stop - 1})",
         f"late ({middle.stop}–{layers - 1})"],
        [],
        "Bands: the middle half of the layers and the quarters either side. Intervals: percentile bootstrap over prompts.",
    )
    for kind in estimates:
        per_item = run.effects[kind]
        band_values = [nanmean(per_item[:, :, band], axis=2) if band.stop > band.start else None
                       for band in (slice(0, middle.start), middle, slice(middle.stop, layers))]
        band_estimates = [estimate_mean(values) if values is not None else None for values in band_values]
        for index, category in enumerate(CATEGORIES):
            bands.rows.append([kind, category] + [_interval(b, index) if b is not None else "n/a" for b in band_estimates])
    return [overview, peaks, bands]


def _control_table(subject: RunEffects, control: RunEffects) -> _Table:
    """Subject vs control span on the same prompts: the last corrupted token, middle layers, and the total effect."""
    common, per_kind, total = paired_difference(control, subject)
    last = category_index("last subject token")
    table = _Table(
        f"{subject.label}: subject vs control span (n={len(common)} prompts)",
        ["quantity", "subject", "control", "subject − control [95% CI]"],
        [],
        "Control: a span of as many text tokens as the subject, right after it (else right before), corrupted "
        "instead of the subject. Subject localisation is real where the difference's interval excludes zero.",
    )
    s, c = subject.subset(common), control.subset(common)
    for kind, difference in per_kind.items():
        middle = middle_layers(difference.mean.shape[1])
        values = [nanmean(run.effects[kind][:, last, middle], axis=1) for run in (s, c)]
        paired = estimate_mean(values[0] - values[1])
        table.rows.append([f"{kind} AIE, last corrupted token, middle layers",
                           _interval(estimate_mean(values[0]), ()), _interval(estimate_mean(values[1]), ()),
                           _interval(paired, ())])
    table.rows.append(["total effect", _interval(estimate_mean(s.total_effect), ()),
                       _interval(estimate_mean(c.total_effect), ()), _interval(total, ())])
    return table


def _paired_table(text: RunEffects, speech: RunEffects, figure_dir: Path, report: Report) -> None:
    common, per_kind, total = paired_difference(text, speech)
    label = f"{text.config.model}: S→T − T→T on {len(common)} prompts recalled in both"
    report.figures.append((label, plot_difference(label, per_kind, len(common), figure_dir / f"difference_{text.run_dir.parent.name}.png")))
    table = _Table(f"{text.config.model}: paired S→T vs T→T (n={len(common)})", ["quantity", "S→T − T→T [95% CI]"], [])
    table.rows.append(["total effect", _interval(total, ())])
    for kind, estimate in per_kind.items():
        peak = np.unravel_index(np.nanargmax(np.abs(np.nan_to_num(estimate.mean))), estimate.mean.shape)
        table.rows.append([f"{kind}: largest difference ({CATEGORIES[peak[0]]}, layer {peak[1]})", _interval(estimate, peak)])
        table.rows.append([f"{kind}: cells whose interval excludes 0", f"{int(estimate.excludes_zero().sum())} of {estimate.mean.size}"])
    report.tables.append(table)
    report.statistics.setdefault("paired", {})[text.config.model] = {
        "known_ids": common, "total_effect": [float(total.mean), float(total.low), float(total.high)]}


def write_report(paths: list[str | Path], out_dir: str | Path | None = None, per_item: int = 0) -> Report:
    runs = find_runs(paths)
    out_dir = Path(out_dir) if out_dir is not None else Path(os.path.commonpath(runs)) / "report"
    figure_dir = out_dir / "figures"
    report = Report(out_dir)
    panels, by_model = [], {}
    for run_dir in runs:
        run = collect_effects(run_dir)
        estimates = {kind: estimate_mean(values) for kind, values in run.effects.items()}
        total = estimate_mean(run.total_effect)
        panels.append((run.label, estimates, len(run.known_ids)))
        report.tables.extend(_run_tables(run, estimates, total))
        report.statistics[str(run_dir)] = {
            "model": run.config.model, "modality": run.config.modality, "voice_config": run.config.voice_config,
            "prompts": len(run.known_ids), "noise_std": run.noise_std,
            "total_effect": [float(total.mean), float(total.low), float(total.high)],
            "aie": {kind: {"mean": e.mean.tolist(), "low": e.low.tolist(), "high": e.high.tolist()} for kind, e in estimates.items()},
            "peaks": {kind: {"category": CATEGORIES[e.peak()[0]], "layer": e.peak()[1], "aie": float(e.mean[e.peak()])}
                      for kind, e in estimates.items()},
        }
        if any((run_dir / "control").glob("*.npz")):
            control = collect_effects(run_dir, "control")
            panels.append((control.label, {k: estimate_mean(v) for k, v in control.effects.items()}, len(control.known_ids)))
            if len(control.known_ids) >= 2:
                report.tables.append(_control_table(run, control))
            else:
                report.tables.append(_Table(f"{run.label}: subject vs control span", ["note"], [[
                    f"only {len(control.known_ids)} prompt(s) leave room for a control span as long as the subject"]]))
        by_model.setdefault(run.config.model, {}).setdefault(run.config.modality, run)
        for known_id in run.known_ids[:per_item]:
            path = figure_dir / "items" / f"{run_dir.parent.name}_{run_dir.name}_{known_id}.png"
            report.figures.append((f"{run.label}, known_id {known_id}", plot_trace(RunFolder(run_dir).load(known_id), path)))
    report.figures.insert(0, ("log10 AIE by position category and layer", plot_aie_heatmaps(panels, figure_dir / "aie.png")))
    for modalities in by_model.values():
        if "text" in modalities and "speech" in modalities:
            _paired_table(modalities["text"], modalities["speech"], figure_dir, report)
    _write_documents(report)
    return report


def _write_documents(report: Report) -> None:
    out = report.out_dir
    markdown = ["# Causal tracing report", ""]
    markdown += [f"![{label}]({path.relative_to(out).as_posix()})\n" for label, path in report.figures]
    markdown += [table.markdown() for table in report.tables]
    atomic_write_text(out / "report.md", "\n".join(markdown))
    images = "".join(
        f"<figure><img src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"
        f"<figcaption>{html.escape(label)}</figcaption></figure>"
        for label, path in report.figures
    )
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}")
    document = (f"<!doctype html><html><head><meta charset='utf-8'><title>Causal tracing report</title>"
                f"<style>{style}</style></head><body><h1>Causal tracing report</h1>{images}"
                f"{''.join(table.html() for table in report.tables)}</body></html>")
    atomic_write_text(out / "report.html", document)
    atomic_write_text(out / "statistics.json", json.dumps(report.statistics, indent=1))
