"""Batched greedy generation (the recall filter's): left-padded batches give exactly the one-prompt
loop's text, for id inputs (tiny Spirit LM, text and speech, with its banned tokens) and embedding
inputs (tiny Qwen2-Audio), and a batched filter writes the rows of an unbatched one."""

from __future__ import annotations

import pytest
from datasets import load_dataset

from known_speech.evaluation.adapter import adapter_class
from known_speech.evaluation.filtering import read_filter, run_filter
from known_speech.evaluation.records import load_records

VOICE = "piper-en_US-joe-medium"


def _batched_equals_single(adapter, records, modality, max_new_tokens=6):
    inputs = [adapter.prepare(record, modality) for record in records]
    assert len({item.length for item in inputs}) > 1  # the batch needs padding
    single = [adapter.generate(item, max_new_tokens) for item in inputs]
    assert adapter.generate_batch(inputs, max_new_tokens) == single
    return single


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["text", "speech"])
def test_spiritlm_batch_equals_one_prompt_at_a_time(spiritlm_release, spoken_dataset, modality):
    adapter = adapter_class("spiritlm")(str(spiritlm_release / "spiritlm_model" / "spirit-lm-base-7b"))
    records = load_records(modality, spoken_dataset, VOICE if modality == "speech" else "")[:5]
    generations = _batched_equals_single(adapter, records, modality)
    assert any(generations)


@pytest.mark.slow
def test_qwen2_audio_embedding_batch_equals_one_prompt_at_a_time(tiny_qwen2_audio, spoken_dataset):
    adapter = adapter_class("qwen2-audio")(str(tiny_qwen2_audio))
    rows = list(load_dataset(str(spoken_dataset), VOICE, split="train"))[:4]
    _batched_equals_single(adapter, rows, "speech")


@pytest.mark.slow
def test_batched_filter_writes_the_rows_of_the_unbatched_one(spiritlm_release, spoken_dataset, tmp_path):
    adapter = adapter_class("spiritlm")(str(spiritlm_release / "spiritlm_model" / "spirit-lm-base-7b"))
    records = load_records("text", spoken_dataset)[:7]
    one = run_filter(adapter, records, "text", tmp_path / "one.jsonl", batch_size=1)
    batched = run_filter(adapter, records, "text", tmp_path / "three.jsonl", batch_size=3)
    assert sorted(one) == sorted(batched) == sorted(int(r["known_id"]) for r in records)
    assert {k: (r.generation, r.match) for k, r in one.items()} == {k: (r.generation, r.match) for k, r in batched.items()}
    assert read_filter(tmp_path / "three.jsonl").keys() == batched.keys()
