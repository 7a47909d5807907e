"""The spoken Known build end to end: real Piper voice, real Whisper tiny.en, real load_dataset."""

import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from known_speech.builders.build import build_dataset
from known_speech.spans import frame_span

pytestmark = pytest.mark.slow

# plain, digits (LGA 775), "&", non-ASCII (Kyōto, Røed), "iPhone 4s", and a clean one Whisper hears
HARD_IDS = [0, 3, 65, 182, 253, 474, 1176]
CONFIG = "piper-en_US-joe-medium"


@pytest.fixture(scope="module")
def built(tmp_path_factory, known_records):
    folder = tmp_path_factory.mktemp("build")
    by_id = {r.known_id: r for r in known_records}
    records = [by_id[i].to_dict() for i in HARD_IDS]
    # verbalises to no words at all: synthesis must fail, be recorded, and not stop the build
    records.append({"known_id": 99999, "subject": "—", "attribute": "x", "template": "{} —",
                    "prompt": "— —", "relation_id": "P0"})
    source = folder / "source.json"
    source.write_text(json.dumps(records), encoding="utf-8")
    out = folder / "known-speech"
    result = build_dataset(out, source=str(source), workers=1)
    return out, source, result


def test_build_round_trips_through_load_dataset(built):
    out, _, result = built
    assert result.voice_config == CONFIG
    card = DatasetCard.load(out / "README.md")
    assert [c["config_name"] for c in card.data.configs] == [CONFIG]
    assert card.data.dataset_info[0]["splits"][0]["num_examples"] == len(HARD_IDS)
    ds = load_dataset(str(out), CONFIG, split="train")
    assert sorted(ds["known_id"]) == sorted(HARD_IDS)
    row = ds[0]
    samples = row["audio"].get_all_samples()
    assert samples.sample_rate == 16_000
    assert samples.data.shape[0] == 1  # mono
    assert math.isclose(samples.data.shape[1] / 16_000, row["duration_s"], abs_tol=1e-3)
    assert float(samples.data.abs().max()) > 0.05  # speech, not silence


def test_failed_item_is_recorded_and_counted(built):
    out, _, result = built
    summary = result.summary
    assert (summary.items, summary.failed) == (len(HARD_IDS) + 1, 1)
    assert summary.failures[0].known_id == 99999
    assert summary.failures[0].stage == "synthesis"
    stats = json.loads((out / "build_stats.json").read_text())[CONFIG]
    assert stats["failed"] == 1 and "Piper produced no audio" in stats["failures"][0]["reason"]


def test_word_spans_are_ordered_inside_audio_and_cover_subject(built):
    out, _, _ = built
    for row in load_dataset(str(out), CONFIG, split="train"):
        words = row["words"]
        starts = [w["start_s"] for w in words]
        assert starts == sorted(starts), row["known_id"]
        for word in words:
            assert 0 <= word["start_s"] <= word["end_s"] <= row["duration_s"] + 1e-6
            assert row["prompt"][word["char_start"] : word["char_end"]] == word["word"]
        subject_start, subject_end = row["subject_char_span"]
        assert row["prompt"][subject_start:subject_end] == row["subject"]
        covering = [w for w in words if w["char_start"] < subject_end and subject_start < w["char_end"]]
        assert covering, row["known_id"]
        time_start, time_end = row["subject_time_span"]
        assert 0 <= time_start < time_end <= row["duration_s"]
        assert time_start == min(w["start_s"] for w in covering)
        assert time_end == max(w["end_s"] for w in covering)
        for span in row["speech_token_spans"]:
            expected = frame_span(time_start, time_end, span["rate_hz"])
            assert (span["frame_start"], span["frame_end"]) == expected
        assert {s["tokenizer"] for s in row["speech_token_spans"]} == {"hubert-25hz", "hubert-50hz"}
        # Piper's own phoneme times: in order, inside the audio, and every word's time holds phonemes of its own
        phonemes = row["phonemes"]
        assert [p["start_s"] for p in phonemes] == sorted(p["start_s"] for p in phonemes), row["known_id"]
        assert all(0 <= p["start_s"] < p["end_s"] <= row["duration_s"] + 1e-6 for p in phonemes)
        assert all(any(w["start_s"] <= p["start_s"] < w["end_s"] and p["phoneme"] != "_" for p in phonemes)
                   for w in words), row["known_id"]
        # "LGA 775" is one written word read as three spoken ones
        if row["known_id"] == 65:
            assert [w["word"] for w in words][:2] == ["LGA", "775"]
            assert "seven hundred seventy-five" in row["spoken_text"]


def test_asr_check_scores_the_spoken_form(built):
    out, _, result = built
    ds = load_dataset(str(out), CONFIG, split="train")
    wers = np.array([row["asr"]["wer"] for row in ds])
    assert np.isfinite(wers).all() and (wers >= 0).all()
    assert math.isclose(result.summary.mean_wer, float(wers.mean()), rel_tol=1e-5)
    assert result.summary.mean_wer < 0.6
    big_bang = next(row for row in ds if row["known_id"] == 3)
    assert big_bang["asr"]["model"] == "tiny.en"
    assert big_bang["asr"]["subject_recognised"], big_bang["asr"]["transcript"]


def _committed(cache_dir):
    return sorted(cache_dir.glob("*.json")) if cache_dir.exists() else []


def test_killed_build_resumes_without_loss_duplication_or_rewrite(tmp_path, known_records):
    source = tmp_path / "source.json"
    source.write_text(json.dumps([r.to_dict() for r in known_records[:16]]), encoding="utf-8")
    out = tmp_path / "known-speech"
    cache_dir = out / ".build" / CONFIG / "items"
    command = [sys.executable, "-m", "known_speech.cli", "build", "--source", str(source), "--out", str(out),
               "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(_committed(cache_dir)) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = _committed(cache_dir)
    assert 3 <= len(committed) < 16, "the build was not interrupted half-way"
    before = {p.stem: (cache_dir / f"{p.stem}.flac").read_bytes() for p in committed}

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    ds = load_dataset(str(out), CONFIG, split="train")
    assert sorted(ds["known_id"]) == list(range(16))  # nothing lost, nothing twice
    rows = {row["known_id"]: row for row in ds}
    for known_id, audio in before.items():
        assert (cache_dir / f"{known_id}.flac").read_bytes() == audio
        assert rows[int(known_id)]["audio"].metadata is not None
    stats = json.loads((out / "build_stats.json").read_text())[CONFIG]
    assert stats["reused"] == len(before) and stats["built"] == 16 - len(before) and stats["failed"] == 0
    assert not list(cache_dir.glob(".*.tmp")), "a temporary file was left behind"
