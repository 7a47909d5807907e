"""Whole trace runs on the tiny Spirit LM checkpoint: filter -> trace (both modalities) -> report, resume
after an interruption, and the torchrun split into real worker processes (gloo) equal to one process.
Random weights recall nothing, so these traces use --unfiltered."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from known_speech.cli import main as cli_main
from known_speech.evaluation.aggregate import collect_effects
from known_speech.evaluation.categories import CATEGORIES
from known_speech.evaluation.run_config import TraceRunConfig
from known_speech.evaluation.run_folder import RunFolder
from known_speech.evaluation.trace_run import run_trace
from known_speech.tracing import TraceOptions, TraceResult

VOICE = "piper-en_US-joe-medium"


@pytest.fixture(scope="module")
def spiritlm_checkpoint(spiritlm_release):
    """The release layout with random weights (conftest.spiritlm_release)."""
    return spiritlm_release


@pytest.mark.slow
def test_spiritlm_filter_trace_both_modalities_and_report(spiritlm_checkpoint, spoken_dataset, tmp_path):
    model = str(spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b")  # the model folder itself
    for modality in ("text", "speech"):
        argv = ["filter", "--model", model, "--modality", modality, "--dataset", str(spoken_dataset)]
        assert cli_main(argv + (["--config", VOICE] if modality == "speech" else []) + ["--limit", "4"]) == 0
    out = tmp_path / "results"
    common = ["--dataset", str(spoken_dataset), "--samples", "3", "--unfiltered", "--out", str(out)]
    assert cli_main(["trace", "--model", model, "--modality", "text", "--limit", "4", *common]) == 0
    assert cli_main(["trace", "--model", model, "--modality", "speech", "--config", VOICE, "--limit", "4", *common]) == 0
    run_root = out / "spirit-lm-base-7b"
    text_dir, speech_dir = run_root / "text", run_root / f"speech-{VOICE}"
    # text prompts come from the dataset's own source (source.json), speech from its built voice: the same facts
    assert RunFolder(text_dir).item_ids() == [0, 3, 21, 65] and RunFolder(speech_dir).item_ids() == [0, 3, 21, 65]
    speech = RunFolder(speech_dir).load(21)
    assert speech.tokens[:3] == ["<s>", "▁", "[Speech]"] and speech.metadata["modality"] == "speech"
    assert speech.metadata["bos"] and speech.metadata["prompt_text"].startswith("[Speech][Hu")
    assert speech.metadata["units"]["quantizer"] == "linear" and speech.metadata["answer_piece"]
    assert speech.scores["mlp"].shape == (len(speech.tokens), 4)
    # noise is calibrated per modality
    text_sigma, speech_sigma = (json.loads((d / "run.json").read_text())["noise_std"] for d in (text_dir, speech_dir))
    assert text_sigma > 0 and speech_sigma > 0 and text_sigma != speech_sigma
    assert cli_main(["report", str(run_root), "--per-item", "1"]) == 0
    report = run_root / "report"
    html = (report / "report.html").read_text()
    assert "data:image/png;base64," in html and f"paired S→T ({VOICE}) − T→T" in html
    markdown = (report / "report.md").read_text()
    assert "subject vs control span" in markdown and "figures/aie_log.png" in markdown
    assert (report / "figures" / "aie_signed.svg").stat().st_size > 10_000
    stats = json.loads((report / "statistics.json").read_text())
    assert stats["paired"][model]["known_ids"] == [0, 3, 21, 65]  # every fact traced from both
    effects = collect_effects(speech_dir)
    assert effects.effects["hidden"].shape == (4, len(CATEGORIES), 4)


@pytest.mark.slow
def test_interrupted_trace_resumes_without_redoing_items(spiritlm_checkpoint, spoken_dataset, tmp_path):
    config = TraceRunConfig(model=str(spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b"), modality="text", dataset=str(spoken_dataset),
                            trace=TraceOptions(samples=2, kinds=("hidden",)), unfiltered=True, limit=2, control=False)
    first = run_trace(config, out=tmp_path)
    run_dir = config.run_dir(tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in (run_dir / "items").glob("*.npz")}
    assert first.traced == 2 and len(stamps) == 2
    # sigma is calibrated on the whole selection (the dataset's own 6 facts here), not on the first --limit
    settings = RunFolder(run_dir).settings()
    assert settings.calibrated_on == 6 and settings.noise_std == first.noise_std
    config.limit = 3
    second = run_trace(config, out=tmp_path)
    assert second.traced == 3 and second.noise_std == first.noise_std
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "items").glob("*.npz") if p.name in stamps} == stamps
    with pytest.raises(ValueError, match="other settings"):
        run_trace(TraceRunConfig(model=config.model, modality="text", dataset=str(spoken_dataset),
                                 trace=TraceOptions(samples=5, kinds=("hidden",)), unfiltered=True, limit=2, control=False),
                  out=tmp_path)


@pytest.mark.slow
def test_torchrun_split_equals_one_process(spiritlm_checkpoint, spoken_dataset, tmp_path):
    args = ["trace", "--model", str(spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b"), "--modality", "speech", "--config", VOICE,
            "--dataset", str(spoken_dataset), "--samples", "2", "--unfiltered", "--limit", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "known_speech.cli", *args, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    split = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--module",
                            "known_speech.cli", *args, "--out", str(tmp_path / "two")],
                           env=env, capture_output=True, text=True)
    assert split.returncode == 0, split.stderr[-2000:]
    one_dir, two_dir = (tmp_path / name / "spirit-lm-base-7b" / f"speech-{VOICE}" for name in ("one", "two"))
    summary = json.loads((two_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and len(summary["per_rank_seconds"]) == 2
    assert all(0 < loop < whole for loop, whole in zip(summary["per_rank_trace_seconds"], summary["per_rank_seconds"]))
    one, two = RunFolder(one_dir), RunFolder(two_dir)
    assert one.item_ids() == two.item_ids() == [0, 3, 21, 65, 182]
    for span in ("items", "control"):
        for known_id in one.item_ids(span):
            a, b = TraceResult.load(one_dir / span / f"{known_id}.npz"), TraceResult.load(two_dir / span / f"{known_id}.npz")
            assert a.noise_std == b.noise_std and a.low_score == b.low_score
            for kind in a.scores:
                np.testing.assert_array_equal(a.scores[kind], b.scores[kind])


@pytest.mark.slow
def test_attribute_metric_run_scores_the_whole_attribute_teacher_forced(spiritlm_checkpoint, tmp_path):
    """--metric attribute through the CLI: the input is Meta's prompt string ("[Text]" + prompt) and the
    attribute but its last token; the clean score equals log P(attribute) summed from the model's own forward; restorations stop
    at the prompt."""
    import torch
    from transformers import LlamaForCausalLM

    from known_speech.evaluation.spiritlm import load_spiritlm_tokenizer

    model = spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b"
    argv = ["trace", "--model", str(model), "--modality", "text", "--dataset", str(tmp_path / "known"), "--limit", "70",
            "--samples", "2", "--kinds", "hidden", "--unfiltered", "--no-control", "--metric", "attribute", "--out", str(tmp_path)]
    assert cli_main(argv) == 0
    run_dir = tmp_path / "spirit-lm-base-7b" / "text-attribute"
    settings = json.loads((run_dir / "run.json").read_text())
    assert settings["config"]["trace"]["metric"] == "attribute"
    folder = RunFolder(run_dir)
    result = max((folder.load(k) for k in folder.item_ids()), key=lambda r: len(r.answer_ids))  # a multi-token one
    # Meta's tokenization (transformers 4's slow LlamaTokenizer, as test_tokenization pins it) of the prompt
    # string with and without the attribute
    tokenizer = load_spiritlm_tokenizer(model)
    prompt_ids = tokenizer(result.metadata["prompt_text"])["input_ids"]
    full_ids = tokenizer(f"{result.metadata['prompt_text']} {result.metadata['attribute']}")["input_ids"]
    assert full_ids[:len(prompt_ids)] == prompt_ids and result.answer_ids == full_ids[len(prompt_ids):]
    assert result.input_ids == full_ids[:-1] and len(result.answer_ids) >= 2
    with torch.no_grad():
        logits = LlamaForCausalLM.from_pretrained(str(model))(torch.tensor([full_ids[:-1]])).logits[0].float()
    reads = torch.log_softmax(logits[len(prompt_ids) - 1:], dim=-1)
    expected = sum(reads[j, token].item() for j, token in enumerate(result.answer_ids))
    assert result.high_score == pytest.approx(expected, abs=1e-4) and result.low_score < 0
    assert np.isnan(result.scores["hidden"][len(prompt_ids):]).all()
    assert not np.isnan(result.scores["hidden"][:len(prompt_ids)]).any()
