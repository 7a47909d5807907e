"""The tracing benchmark's pieces: answer matching, categories, statistics, adapters' registry, the
filter on the real SmolLM2, and Qwen2-Audio's continuous-embedding input on a tiny saved model.
(Spirit LM: test_spiritlm.py; whole runs: test_trace_run.py; synthetic run folders: test_statistics.py.)
"""

import json
import textwrap
from collections import Counter

import numpy as np
import pytest
import torch

from known_speech.cli import main as cli_main
from known_speech.evaluation.adapter import adapter_class, available_adapters
from known_speech.evaluation.aggregate import estimate_mean
from known_speech.evaluation.categories import CATEGORIES, category_effects, category_members
from known_speech.evaluation.filtering import read_filter
from known_speech.evaluation.matching import classify_answer, first_answer
from known_speech.evaluation.model_input import control_text_range
from known_speech.evaluation.prompt_input import text_model_input
from known_speech.evaluation.sharding import balanced_shares, trace_cost
from known_speech.evaluation.speech_links import text_tokens_of_frames
from known_speech.tracing import TraceOptions

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
    records = [{"known_id": r.known_id, "prompt": r.prompt, "subject": r.subject, "attribute": r.attribute,
                "subject_char_span": list(r.subject_char_span)} for r in known_records[:64]]
    costs = {r["known_id"]: trace_cost(r, control=True) for r in records}
    assert costs[0] != costs[1] and min(costs.values()) > 0
    # the estimate, made before any input exists, orders items as the work of their real inputs does
    from scipy.stats import spearmanr

    inputs = [text_model_input(tokenizer, r) for r in records]
    work = [(m.length - m.subject_range[0] + 1) * m.length for m in inputs]
    assert spearmanr(work, [costs[r["known_id"]] for r in records]).statistic > 0.7  # 0.77 with SmolLM2
    for world_size in (2, 3, 8):
        shares = balanced_shares(costs, world_size)
        assert sorted(i for share in shares for i in share) == sorted(costs)  # each item once
        assert all(share == sorted(share) for share in shares)
        loads = [sum(costs[i] for i in share) for share in shares]
        assert max(loads) - min(loads) <= max(costs.values())
        round_robin = [sum(costs[i] for i in list(costs)[rank::world_size]) for rank in range(world_size)]
        assert max(loads) < max(round_robin)
    # speech rows count 25 positions per second
    assert trace_cost({"prompt": "x", "duration_s": 2.0, "subject_time_span": [0.4, 0.8]}, control=False) == 41 * 50


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
    out = capsys.readouterr().out  # the configs written and how to load them, not the internal rows file
    assert ".build" not in out and f"configs of {dataset}: filter-smollm2 (24 rows), known_t2t-smollm2 (" in out
    assert f"load one with: datasets.load_dataset('{dataset}', 'known_t2t-smollm2', split='train')" in out
    path = dataset / ".build" / "filters" / "smollm2" / "text.jsonl"  # the resumable rows
    rows = read_filter(path)
    assert len(rows) == 24
    assert rows[21].match == "exact" and rows[21].answer == "Rome"  # "The capital of Italy is" -> " Rome."
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:20]) + "\n" + lines[20][:15])  # interrupted mid-write
    assert cli_main(argv) == 0
    again = read_filter(path)
    # nothing asked twice: one row per prompt, and a recalled fact's row once more with its probes' flags
    counts = Counter(json.loads(line)["known_id"] for line in path.read_text().splitlines())
    assert again.keys() == rows.keys() == counts.keys()
    assert all(counts[k] == (2 if again[k].match != "none" else 1) for k in counts), counts
    assert all((again[k].subject_dependent is not None) == (again[k].match != "none") for k in again)
    assert [again[k].generation for k in sorted(again)] == [rows[k].generation for k in sorted(rows)]
    from datasets import load_dataset

    view = load_dataset(str(dataset), "known_t2t-smollm2", split="train")  # a parquet config of the folder
    assert set(view["known_id"]) == {k for k, row in rows.items() if row.match != "none"}
    rome = next(row for row in view if row["known_id"] == 21)
    assert (rome["prompt"], rome["attribute"], rome["answer"], rome["match"]) == \
        ("The capital of Roman Republic is", "Rome", "Rome", "exact")
    assert len(load_dataset(str(dataset), "filter-smollm2", split="train")) == 24


@pytest.mark.slow
def test_check_model_says_the_speech_checks_did_not_run_and_strict_fails(tmp_path, capsys):
    argv = ["check-model", "smollm2", "--config", "piper-en_US-joe-medium", "--dataset", str(tmp_path / "ds")]
    assert cli_main([*argv, "--strict"]) == 1
    captured = capsys.readouterr()
    assert "WARN  speech" in captured.out and ("not run: adapter hf-text reads text only; --config "
                                               "piper-en_US-joe-medium is not used") in captured.out
    assert "'The capital of Roman Republic is' -> 'Rome' (expected 'Rome': exact)" in captured.out  # beside the answer
    assert captured.err == "known-speech: check-model failed: speech\n"  # every other check passes


@pytest.mark.slow
def test_qwen2_audio_adapter_corrupts_embedding_frames_of_the_subject(tiny_qwen2_audio, spoken_dataset):
    """Continuous-embedding speech: a tiny random Qwen2-Audio saved with its processor, loaded by name."""
    from datasets import load_dataset

    from known_speech.tracing import CausalTracer

    tmp_path = tiny_qwen2_audio
    adapter = adapter_class("qwen2-audio")(str(tmp_path))
    tokenizer = adapter.tokenizer
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
    # the attribute metric appends the attribute's embeddings (all but the last token) after the audio
    from known_speech.evaluation.trace_run import scored_input

    forced, ids = scored_input(adapter, model_input, row, TraceOptions(metric="attribute"))
    continuation = tokenizer(f"{model_input.prompt_text} {row['attribute']}")["input_ids"]
    assert ids == continuation[len(tokenizer(model_input.prompt_text)["input_ids"]):] and forced.length == model_input.length + len(ids) - 1
    with torch.no_grad():
        expected = adapter.decoder.get_input_embeddings()(torch.tensor(ids[:-1], dtype=torch.long))
    torch.testing.assert_close(forced.inputs_embeds[model_input.length:], expected)
    assert forced.text_token_of_position[model_input.length:] == [None] * (len(ids) - 1)


def test_a_filter_resumed_with_other_settings_names_the_fields_that_changed(tmp_path):
    """A retrained delta changes a few leaves among dozens of provenance fields: the refusal names those
    (then → now), not the whole record, and says the fix."""
    from known_speech.evaluation.filtering import _check_settings

    rows = tmp_path / "speech.jsonl"
    rows.write_text("{}\n")
    saved = {"model": "spirit-smollm2", "max_new_tokens": 12,
             "provenance": {"delta": {"files": {"adapter_model.safetensors": "84ab7ff34ae7e314e94197f090229b6d"},
                                      "training": {"steps": 573}}, "dtype": "float32"}}
    _check_settings(rows, saved)
    _check_settings(rows, saved)  # the same settings resume
    retrained = json.loads(json.dumps(saved))
    retrained["provenance"]["delta"]["files"]["adapter_model.safetensors"] = "aab5398ed5550400"
    retrained["provenance"]["delta"]["training"]["steps"] = 1135
    with pytest.raises(ValueError) as refused:
        _check_settings(rows, retrained)
    message = str(refused.value)
    assert message == (f"{rows} was made with other settings (provenance.delta.files.adapter_model.safetensors: "
                       "84ab7ff34ae7e314… → aab5398ed5550400; provenance.delta.training.steps: 573 → 1135); "
                       "delete it or use another --dataset")
