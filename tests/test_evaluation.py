"""The tracing benchmark: adapters, filters, the resumable runner (and its torchrun split), statistics, report.

Spirit LM's weights are Hub-only, so its adapter runs here on a tiny random checkpoint laid out as the
release (Llama weights, a SentencePiece tokenizer.model with [Text] [Speech] [Hu0]..[Hu500], the fairseq
mHuBERT and the linear quantizer), over real Piper speech from a real build. Random weights recall nothing, so those traces use --unfiltered;
the filter itself is checked on the real SmolLM2.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from known_speech.cli import main as cli_main
from known_speech.evaluation.adapter import adapter_class, available_adapters, text_tokens_of_frames
from known_speech.evaluation.aggregate import collect_effects, estimate_mean
from known_speech.evaluation.categories import CATEGORIES, category_effects, category_members
from known_speech.evaluation.filtering import classify_answer, first_answer, read_filter
from known_speech.evaluation.adapter import text_model_input
from known_speech.evaluation.runner import (TraceRunConfig, balanced_shares, control_text_range, item_ids, load_item,
                                           run_trace, trace_cost)
from known_speech.tracing import TraceResult

VOICE = "piper-en_US-joe-medium"


# -- pure pieces, hand-computed ----------------------------------------------------------------
@pytest.mark.parametrize(
    "generation, match",
    [(" Rome.\n\nThe Roman Republic", "exact"), (" Rome, Italy", "partial"), (" the city of Rome.", "partial"),
     (" Roman history", "none"), (" Europe, and it is a member of the Rome group", "none"), ("", "none")],
)
def test_answer_classification_follows_the_paper(generation, match):
    assert classify_answer(generation, "Rome") == match


def test_first_answer_stops_at_the_sentence_but_not_at_abbreviations():
    assert first_answer(" Rome. It is old") == "Rome"
    assert first_answer(" St. Louis\nand more") == "St. Louis"


def test_category_members_of_a_ten_token_prompt():
    members = category_members((1, 4), 10)
    assert members == {
        "first subject token": [1], "middle subject tokens": [2], "last subject token": [3],
        "first subsequent token": [4], "further tokens": [5, 6, 7, 8], "last token": [9],
    }
    one_token = category_members((0, 1), 3)
    assert one_token["first subject token"] == one_token["last subject token"] == [0]
    assert one_token["middle subject tokens"] == [] and one_token["further tokens"] == []


def test_speech_positions_are_averaged_through_their_text_token_first():
    # 4 text tokens; positions: marker, 3 units voicing token 0, 1 unit voicing token 1, 2 for token 2, marker -> 3
    links = [None, 0, 0, 0, 1, 2, 2, 3]
    effects = np.array([[9.0], [1.0], [2.0], [6.0], [4.0], [8.0], [0.0], [5.0]])
    table = category_effects(effects, links, (0, 2), 4)
    assert table[:, 0].tolist()[0] == 3.0  # first subject token: mean of 1, 2, 6
    assert table[CATEGORIES.index("last subject token"), 0] == 4.0
    assert table[CATEGORIES.index("first subsequent token"), 0] == 4.0  # token 2: mean of 8 and 0
    assert np.isnan(table[CATEGORIES.index("further tokens"), 0])
    assert table[CATEGORIES.index("last token"), 0] == 5.0


def test_control_span_has_the_subject_length_and_avoids_subject_and_last_token():
    assert control_text_range((0, 2), 6) == (2, 4)
    assert control_text_range((3, 5), 6) == (1, 3)
    assert control_text_range((0, 3), 4) is None


def test_ranks_share_the_known_prompts_by_cost_better_than_round_robin(smollm2, known_records):
    _, tokenizer = smollm2
    records = [{"known_id": r.known_id, "prompt": r.prompt, "subject": r.subject, "attribute": r.attribute}
               for r in known_records[:64]]
    costs = {r["known_id"]: trace_cost(text_model_input(tokenizer, r), r, control=True) for r in records}
    assert costs[0] != costs[1] and min(costs.values()) > 0
    for world_size in (2, 3, 8):
        shares = balanced_shares(costs, world_size)
        assert sorted(i for share in shares for i in share) == sorted(costs)  # each item once
        assert all(share == sorted(share) for share in shares)
        loads = [sum(costs[i] for i in share) for share in shares]
        assert max(loads) - min(loads) <= max(costs.values())
        round_robin = [sum(costs[i] for i in list(costs)[rank::world_size]) for rank in range(world_size)]
        assert max(loads) < max(round_robin)
    # an unprepared item (a resumed run) falls back to the prompt's characters
    assert trace_cost(None, records[0], control=False) == (len(records[0]["prompt"]) + 1) * len(records[0]["prompt"])


def test_frames_map_to_words_and_split_multi_token_words_by_characters():
    words = [{"word": "Big", "char_start": 0, "char_end": 3, "start_s": 0.0, "end_s": 0.2},
             {"word": "Ben", "char_start": 4, "char_end": 7, "start_s": 0.4, "end_s": 0.8}]
    token_spans = [(0, 3), (3, 5), (5, 7)]  # "Big", " B", "en"
    links = text_tokens_of_frames(np.arange(25), 25, 25.0, words, token_spans)
    assert links[:5] == [0] * 5  # 0-0.2 s
    assert links[7] == 0 and links[8] == 1  # silence: nearest word
    assert links[10] == 1 and links[15] == 2 and links[24] == 2


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_prompts():
    rng = np.random.default_rng(0)
    small, large = estimate_mean(rng.normal(1.0, 1.0, 20)), estimate_mean(rng.normal(1.0, 1.0, 500))
    assert small.low < small.mean < small.high and large.low < 1.0 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_adapters_register_through_entry_points(tmp_path, monkeypatch):
    (tmp_path / "my_lab_adapter.py").write_text(textwrap.dedent("""
        from known_speech.evaluation.hf_text import HFTextAdapter
        class MyLabAdapter(HFTextAdapter):
            name = "my-lab"
    """))
    dist_info = tmp_path / "my_lab_adapter-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-lab-adapter\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[known_speech.adapters]\nmy-lab = my_lab_adapter:MyLabAdapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert {"hf-text", "spiritlm", "qwen2-audio", "my-lab"} <= set(available_adapters())
    assert adapter_class("my-lab").__name__ == "MyLabAdapter"
    with pytest.raises(ValueError, match="unknown adapter 'nope'"):
        adapter_class("nope")


# -- real SmolLM2 ------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_filter_finds_rome_and_resumes_after_a_torn_line(tmp_path, capsys):
    dataset = tmp_path / "ds"
    argv = ["filter", "--model", "smollm2", "--modality", "text", "--dataset", str(dataset), "--limit", "24"]
    assert cli_main(argv) == 0
    path = dataset / "filters" / "smollm2" / "text.jsonl"
    rows = read_filter(path)
    assert len(rows) == 24
    assert rows[21].match == "exact" and rows[21].answer == "Rome"  # "The capital of Italy is" -> " Rome."
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:20]) + "\n" + lines[20][:15])  # interrupted mid-write
    assert cli_main(argv) == 0
    again = read_filter(path)
    assert len(path.read_text().splitlines()) == 24 and again.keys() == rows.keys()
    assert [again[k].generation for k in sorted(again)] == [rows[k].generation for k in sorted(rows)]
    view = [json.loads(line) for line in (dataset / "views" / "known_t2t-smollm2.jsonl").read_text().splitlines()]
    assert {row["known_id"] for row in view} == {k for k, row in rows.items() if row.match != "none"}


# -- a tiny Spirit LM checkpoint over real speech ------------------------------------------------
@pytest.fixture(scope="module")
def spiritlm_checkpoint(spiritlm_release):
    """The release layout with random weights (conftest.spiritlm_release)."""
    return spiritlm_release


def _copy_tokenizer(tokenizer, folder):
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.mark.slow
def test_spiritlm_adapter_builds_the_release_prompt_formats(spiritlm_checkpoint, spoken_dataset):
    """Meta's strings, tokenized whole by the release's SentencePiece model as transformers 4.x does:
    <s>, the lone "▁" a user-defined marker leaves, [Text] + the prompt, or [Speech] + units + [Text]."""
    from datasets import load_dataset

    adapter = adapter_class("spiritlm")(str(spiritlm_checkpoint))
    row = next(r for r in load_dataset(str(spoken_dataset), VOICE, split="train") if r["known_id"] == 21)
    text = adapter.prepare(row, "text")
    assert text.prompt_text == "[Text]" + row["prompt"] and text.bos
    assert text.pieces[:3] == ["<s>", "▁", "[Text]"]
    assert "".join(text.text_tokens) == row["prompt"]
    subject = "".join(text.text_tokens[slice(*text.subject_text_range)])
    assert subject.strip() == row["subject"] == "Roman Republic"
    assert text.text_token_of_position[text.subject_range[0]] == text.subject_text_range[0]
    speech = adapter.prepare(row, "speech")
    assert speech.pieces[:3] == ["<s>", "▁", "[Speech]"] and speech.pieces[-1] == "[Text]"
    assert all(piece.startswith("[Hu") for piece in speech.pieces[3:-1])
    units = [int(piece[3:-1]) for piece in speech.pieces[3:-1]]
    assert all(a != b for a, b in zip(units, units[1:])), "units must be de-duplicated"
    assert len(set(units)) >= 3 and speech.metadata["num_frames"] > len(units) > 10
    assert speech.metadata["units_source"] == "speech_tokenizer" and speech.metadata["units"]["quantizer"] == "linear"
    assert speech.prompt_text == "[Speech]" + "".join(speech.pieces[3:-1]) + "[Text]"
    # the subject's positions voice the subject's text tokens; the last marker stands for the last token
    subject_links = set(speech.text_token_of_position[slice(*speech.subject_range)])
    assert subject_links & set(range(*speech.subject_text_range))
    assert speech.text_token_of_position[-1] == len(speech.text_tokens) - 1
    assert text.answer.id == speech.answer.id and not text.answer.piece.strip("▁") == ""


@pytest.mark.slow
def test_spiritlm_generation_bans_markers_and_speech_tokens(spiritlm_checkpoint, spoken_dataset):
    """Meta's generate(output_modality="text") passes [Text], [Speech] and every [Hu..] as bad_words_ids;
    a model left free emits them, ours never does, and equals HF generate with that ban."""
    from datasets import load_dataset

    adapter = adapter_class("spiritlm")(str(spiritlm_checkpoint))
    banned = adapter.banned_token_ids("speech")
    pieces = adapter.tokenizer.convert_ids_to_tokens(banned)
    assert len(banned) == 503 and {"[Text]", "[Speech]", "[Hu0]", "[Hu500]"} <= set(pieces)
    row = next(r for r in load_dataset(str(spoken_dataset), VOICE, split="train") if r["known_id"] == 21)
    model_input = adapter.prepare(row, "speech")
    ids = torch.tensor([model_input.input_ids])
    with torch.no_grad():  # a model that prefers speech tokens, as Spirit LM may after a speech prompt
        adapter.model.lm_head.weight[banned] *= 5
    free = adapter.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
    assert set(free[0, ids.shape[1]:].tolist()) & set(banned), "the test needs a model that drifts into speech"
    ours = adapter.generate(model_input, 20)
    meta = adapter.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                                  bad_words_ids=[[i] for i in banned], pad_token_id=adapter.tokenizer.eos_token_id)
    assert not set(meta[0, ids.shape[1]:].tolist()) & set(banned)
    assert ours == adapter.tokenizer.decode(meta[0, ids.shape[1]:], skip_special_tokens=True)


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
    # text prompts come from the whole Known source, speech from the built voice: pairs are the shared ones
    assert item_ids(text_dir) == [0, 1, 2, 3] and item_ids(speech_dir) == [0, 3, 21, 65]
    speech = load_item(speech_dir, 21)
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
    assert "data:image/png;base64," in html and "paired S→T vs T→T" in html
    markdown = (report / "report.md").read_text()
    assert "subject vs control span" in markdown and "figures/aie.png" in markdown
    assert (report / "figures" / "difference_spirit-lm-base-7b.png").stat().st_size > 10_000
    stats = json.loads((report / "statistics.json").read_text())
    assert stats["paired"][model]["known_ids"] == [0, 3]
    effects = collect_effects(speech_dir)
    assert effects.effects["hidden"].shape == (4, len(CATEGORIES), 4)


@pytest.mark.slow
def test_interrupted_trace_resumes_without_redoing_items(spiritlm_checkpoint, spoken_dataset, tmp_path):
    config = TraceRunConfig(model=str(spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b"), modality="text", dataset=str(spoken_dataset),
                            samples=2, kinds=("hidden",), unfiltered=True, limit=2, control=False)
    first = run_trace(config, out=tmp_path)
    run_dir = config.run_dir(tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in (run_dir / "items").glob("*.npz")}
    assert first.traced == 2 and len(stamps) == 2
    config.limit = 3
    second = run_trace(config, out=tmp_path)
    assert second.traced == 3
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "items").glob("*.npz") if p.name in stamps} == stamps
    with pytest.raises(ValueError, match="other settings"):
        run_trace(TraceRunConfig(model=config.model, modality="text", dataset=str(spoken_dataset),
                                 samples=5, kinds=("hidden",), unfiltered=True, limit=2, control=False), out=tmp_path)


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
    assert item_ids(one_dir) == item_ids(two_dir) == [0, 3, 21, 65, 182]
    for span in ("items", "control"):
        for known_id in item_ids(one_dir, span):
            a, b = TraceResult.load(one_dir / span / f"{known_id}.npz"), TraceResult.load(two_dir / span / f"{known_id}.npz")
            assert a.noise_std == b.noise_std and a.low_score == b.low_score
            for kind in a.scores:
                np.testing.assert_array_equal(a.scores[kind], b.scores[kind])


@pytest.mark.slow
def test_qwen2_audio_adapter_corrupts_embedding_frames_of_the_subject(tmp_path, smollm2, spoken_dataset):
    """Continuous-embedding speech: a tiny random Qwen2-Audio saved with its processor, loaded by name."""
    from datasets import load_dataset
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor, WhisperFeatureExtractor

    from known_speech.tracing import CausalTracer, TraceOptions

    tokenizer = _copy_tokenizer(smollm2[1], tmp_path)
    tokenizer.add_tokens(["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"], special_tokens=True)
    Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer).save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = Qwen2AudioConfig(
        audio_config=dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    Qwen2AudioForConditionalGeneration(config).save_pretrained(tmp_path)
    adapter = adapter_class("qwen2-audio")(str(tmp_path))
    row = next(r for r in load_dataset(str(spoken_dataset), VOICE, split="train") if r["known_id"] == 21)
    model_input = adapter.prepare(row, "speech")
    frames = model_input.metadata["num_audio_frames"]
    assert frames == pytest.approx(row["duration_s"] * 25, abs=2)  # 25 audio embeddings per second
    assert model_input.inputs_embeds.shape[0] == model_input.length == frames + 2  # bos, audio, eos
    start, end = model_input.subject_range
    assert (start - 1, end - 1) == (int(row["subject_time_span"][0] * 25), min(frames, int(np.ceil(row["subject_time_span"][1] * 25))))
    # the processor's count: Whisper's 100 mel frames/s, then (n - 1) // 2 + 1 and (n - 2) // 2 + 1
    from known_speech.audio import waveform_of

    mel = int(adapter.processor.feature_extractor(waveform_of(row["audio"]), sampling_rate=16_000, padding="max_length",
                                                  return_attention_mask=True)["attention_mask"].sum())
    assert frames == ((mel - 1) // 2 + 1 - 2) // 2 + 1
    assert model_input.prompt_text == "<|audio_bos|><|AUDIO|><|audio_eos|>" and not model_input.bos
    assert isinstance(adapter.generate(model_input, 3), str)
    # the base model card's text after the audio, as a recorded setting
    suffixed = adapter_class("qwen2-audio")(str(tmp_path), text_suffix=" Answer:").prepare(row, "speech")
    assert suffixed.prompt_text.endswith("<|audio_eos|> Answer:") and suffixed.metadata["text_suffix"] == " Answer:"
    assert suffixed.length > model_input.length and suffixed.subject_range == model_input.subject_range
    assert suffixed.text_token_of_position[-1] == len(suffixed.text_tokens) - 1
    result = CausalTracer(adapter.decoder).trace(inputs_embeds=model_input.inputs_embeds, subject_range=(start, end),
                                                 answer_id=model_input.answer.id, options=TraceOptions(samples=2, kinds=("hidden",)))
    assert result.scores["hidden"].shape == (model_input.length, 2)  # the self-check against the model's forward passed


# -- conformance of the Spirit LM path on the release layout --------------------------------------
@pytest.mark.slow
def test_check_model_passes_on_the_release_layout_and_fails_without_bos(spiritlm_checkpoint, spoken_dataset, tmp_path,
                                                                     capsys):
    model = str(spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b")
    argv = ["check-model", model, "--dataset", str(spoken_dataset), "--config", VOICE]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    for line in ("PASS  text: BOS", "PASS  speech: BOS", "PASS  speech: units", "PASS  text: answer token",
                 "PASS  speech: restoration", "WARN  text: recall"):  # random weights recall nothing
        assert line in out, out
    assert "['<s>', '▁', '[Speech]', '[Hu" in out  # the exact pieces fed are shown
    # the same checkpoint whose tokenizer defines no BOS: Meta's code would start with <s>, ours cannot
    broken = tmp_path / "spiritlm"
    shutil.copytree(spiritlm_checkpoint, broken)
    lm_dir = broken / "spiritlm_model" / "spirit-lm-base-7b"
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = json.loads((lm_dir / name).read_text())
        config["bos_token"] = None
        (lm_dir / name).write_text(json.dumps(config))
    assert cli_main(["check-model", str(lm_dir), "--dataset", str(spoken_dataset), "--config", VOICE]) == 1
    captured = capsys.readouterr()
    assert "FAIL  text: BOS" in captured.out and "check-model failed: text: BOS, speech: BOS" in captured.err


@pytest.fixture(scope="module")
def spoken_dataset_with_units(tmp_path_factory, known_records, spiritlm_checkpoint):
    """A real Piper build whose rows carry the units of the release's speech tokenizer."""
    from known_speech.builders.build import build_dataset

    folder = tmp_path_factory.mktemp("spoken-units")
    by_id = {r.known_id: r for r in known_records}
    source = folder / "source.json"
    source.write_text(json.dumps([by_id[i].to_dict() for i in (21, 65)]), encoding="utf-8")
    build_dataset(folder / "known-speech", source=str(source), workers=1, unit_tokenizer=str(spiritlm_checkpoint))
    return folder / "known-speech"


@pytest.mark.slow
def test_stored_units_are_used_only_when_this_model_s_tokenizer_made_them(spiritlm_checkpoint, spoken_dataset_with_units):
    from datasets import load_dataset

    from known_speech.audio import waveform_of

    adapter = adapter_class("spiritlm")(str(spiritlm_checkpoint))
    rows = list(load_dataset(str(spoken_dataset_with_units), VOICE, split="train"))
    span = next(s for s in rows[0]["speech_token_spans"] if s["tokenizer"] == "hubert-25hz")
    provenance = adapter.speech_tokenizer.provenance
    assert (span["units_quantizer"], span["units_checkpoint_sha256"]) == ("linear", provenance.checkpoint_sha256)
    model_input = adapter.prepare(rows[0], "speech")
    assert model_input.metadata["units_source"] == "dataset"
    assert span["units"] == adapter.speech_tokenizer.encode(waveform_of(rows[0]["audio"])).tolist()
    other = {**rows[0], "speech_token_spans": [{**s, "units_checkpoint_sha256": "0" * 64, "units_quantizer": "kmeans",
                                                 "units_tokenizer": "twist-L11"} for s in rows[0]["speech_token_spans"]]}
    with pytest.raises(ValueError, match="made by twist-L11 .kmeans.*rebuild with --unit-tokenizer"):
        adapter.prepare(other, "speech")
    unrecorded = {**rows[0], "speech_token_spans": [{**s, "units_checkpoint_sha256": None}
                                                     for s in rows[0]["speech_token_spans"]]}
    with pytest.raises(ValueError, match="record no tokenizer"):
        adapter.prepare(unrecorded, "speech")


@pytest.mark.slow
def test_expressive_checkpoint_without_pitch_and_style_tokenizers_is_refused(tmp_path, spoken_dataset):
    from datasets import load_dataset

    from .release_formats import EXPRESSIVE_MARKERS, SPIRITLM_MARKERS, train_sentencepiece, write_spiritlm_release

    model = train_sentencepiece(tmp_path / "sp", SPIRITLM_MARKERS + EXPRESSIVE_MARKERS)
    lm_dir = write_spiritlm_release(tmp_path / "checkpoints", model, expressive=True)
    adapter = adapter_class("spiritlm")(str(lm_dir))
    assert adapter.expressive and len(adapter.banned_token_ids("text")) == 503 + 164
    row = next(r for r in load_dataset(str(spoken_dataset), VOICE, split="train") if r["known_id"] == 21)
    assert adapter.prepare(row, "text").pieces[2] == "[Text]"
    with pytest.raises(ValueError, match=r"expressive model: its prompts interleave \[Pi..\] and \[St..\]"):
        adapter.prepare(row, "speech")


@pytest.mark.slow
def test_filter_records_its_settings_and_refuses_a_resume_with_others(spiritlm_checkpoint, spoken_dataset, tmp_path):
    dataset = tmp_path / "ds"
    model = str(spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b")
    argv = ["filter", "--model", model, "--modality", "text", "--dataset", str(dataset), "--limit", "2"]
    assert cli_main(argv) == 0
    settings = json.loads((dataset / "filters" / "spirit-lm-base-7b" / "text.json").read_text())
    assert settings["dtype"] == "float32" and settings["banned_tokens"] == 503 and settings["max_new_tokens"] == 12
    assert cli_main(argv + ["--max-new-tokens", "5"]) == 2
    assert cli_main(argv) == 0  # the same settings resume
