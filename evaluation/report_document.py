"""The report's documents: report.md, a self-contained report.html (figures inlined, PDF/SVG linked) and
statistics.json, written atomically from the tables and figures `report` assembled."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

from known_speech.atomic import atomic_write_text

__all__ = ["Table", "Figure", "write_documents"]

_STYLE = ("body{font-family:sans-serif;max-width:1250px;margin:auto;padding:0 1em}img{max-width:100%}"
          "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;"
          "vertical-align:top}th{background:#f3f3f3}figure{margin:1.5em 0}figcaption{font-size:13px;color:#333}"
          ".warning{background:#fff3cd;border:1px solid #e0b000;padding:.5em 1em;margin:1em 0}")
_LONG_TABLE = 40  # rows above which the HTML folds a table away


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        escape = lambda cell: cell.replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines = [f"### {self.title}", "", "| " + " | ".join(map(escape, self.header)) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(map(escape, row)) + " |" for row in self.rows]
        return "\n".join(lines + ([f"\n{self.note}"] if self.note else [])) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self.rows)
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        table = f"<table><tr>{head}</tr>{body}</table>{note}"
        if len(self.rows) > _LONG_TABLE:
            return f"<details><summary><b>{html.escape(self.title)}</b> ({len(self.rows)} rows)</summary>{table}</details>"
        return f"<h3>{html.escape(self.title)}</h3>{table}"


@dataclass
class Figure:
    path: Path  # the PNG; PDF and SVG lie beside it where written
    title: str
    caption: str

    def vector_files(self) -> list[Path]:
        return [p for p in (self.path.with_suffix(".pdf"), self.path.with_suffix(".svg")) if p.exists()]


def _markdown(report) -> str:
    out = report.out_dir
    lines = ["# Causal tracing report", ""]
    if report.header is not None:
        lines.append(report.header.markdown())
    lines += [f"> **Warning:** {warning}\n" for warning in report.warnings]
    for number, figure in enumerate(report.figures, 1):
        links = ", ".join(f"[{p.suffix[1:].upper()}]({p.relative_to(out).as_posix()})" for p in figure.vector_files())
        lines += [f"![{figure.title}]({figure.path.relative_to(out).as_posix()})", "",
                  f"*Figure {number}: {figure.title}.* {figure.caption}" + (f" ({links})" if links else ""), ""]
    lines += [table.markdown() for table in report.tables]
    return "\n".join(lines)


def _html(report) -> str:
    out = report.out_dir
    parts = ["<h1>Causal tracing report</h1>"]
    if report.header is not None:
        parts.append(report.header.html())
    parts += [f"<div class='warning'><b>Warning:</b> {html.escape(warning)}</div>" for warning in report.warnings]
    for number, figure in enumerate(report.figures, 1):
        links = " ".join(f"<a href='{html.escape(p.relative_to(out).as_posix())}'>{p.suffix[1:].upper()}</a>"
                         for p in figure.vector_files())
        image = base64.b64encode(figure.path.read_bytes()).decode()
        parts.append(f"<figure><img alt='{html.escape(figure.title)}' src='data:image/png;base64,{image}'>"
                     f"<figcaption><b>Figure {number}: {html.escape(figure.title)}.</b> {html.escape(figure.caption)} "
                     f"{links}</figcaption></figure>")
    parts += [table.html() for table in report.tables]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Causal tracing report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")


def write_documents(report) -> None:
    atomic_write_text(report.out_dir / "report.md", _markdown(report))
    atomic_write_text(report.out_dir / "report.html", _html(report))
    atomic_write_text(report.out_dir / "statistics.json", json.dumps(report.statistics, indent=1))
