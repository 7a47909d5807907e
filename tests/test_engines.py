"""TTS engines (espeak-ng, Piper through the JSON-lines protocol, external audio), multi-voice folders
and versioned publishing. Real engines, real load_dataset; the Hub upload itself cannot run here."""

import json
import shutil
import subprocess

import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from known_speech.builders.build import build_dataset
from known_speech.builders.publish import plan_publish
from known_speech.builders.tts import create_engine
from known_speech.builders.tts.subprocess_engine import SubprocessEngine
from known_speech.cli import main as cli_main
from known_speech.spoken import verbalise

pytestmark = pytest.mark.slow

IDS = (0, 21, 65)


@pytest.fixture(scope="module")
def source(tmp_path_factory, known_records):
    by_id = {r.known_id: r for r in known_records}
    path = tmp_path_factory.mktemp("source") / "source.json"
    path.write_text(json.dumps([by_id[i].to_dict() for i in IDS]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory, source):
    """espeak-ng first, then Piper through the subprocess protocol into the same folder."""
    out = tmp_path_factory.mktemp("voices") / "known-speech"
    first = build_dataset(out, engine="espeak-ng", voice="en-us", source=str(source), workers=1)
    first_bytes = {p.name: p.read_bytes() for p in (out / first.voice_config).glob("*.parquet")}
    second = build_dataset(out, engine="piper-subprocess", voice="en_US-joe-medium", source=str(source), workers=1)
    return out, first, second, first_bytes


def test_two_voices_load_as_two_configs_and_the_first_is_untouched(two_voices):
    out, first, second, first_bytes = two_voices
    assert (first.voice_config, second.voice_config) == ("espeak-ng-en-us", "piper-subprocess-en_US-joe-medium")
    assert {p.name: p.read_bytes() for p in (out / first.voice_config).glob("*.parquet")} == first_bytes
    for result in (first, second):
        rows = load_dataset(str(out), result.voice_config, split="train")
        assert sorted(rows["known_id"]) == list(IDS)
        assert rows[0]["audio"].get_all_samples().sample_rate == 16_000
    card = DatasetCard.load(out / "README.md")
    assert {c["config_name"] for c in card.data.configs} == {first.voice_config, second.voice_config}
    assert "| `espeak-ng-en-us` | espeak-ng 1.51 |" in card.text


def test_engines_with_their_own_durations_are_aligned_by_them_and_scored_against_whisper(two_voices):
    """espeak-ng's phoneme events (its C library) and Piper's sample counts both give the words' times; Whisper's
    estimate is kept beside them with its boundary error. A misheard robotic voice is kept where it holds voice
    activity (faster-whisper's Silero VAD), silence is not."""
    import numpy as np

    from known_speech.audio import waveform_of
    from known_speech.builders.asr import voiced_seconds

    out, first, second, _ = two_voices
    espeak = load_dataset(str(out), first.voice_config, split="train")
    for row in espeak:
        assert row["alignment"]["method"] == "tts" and row["phonemes"]
        starts = [w["start_s"] for w in row["words"]]
        assert starts == sorted(starts) and row["words"][-1]["end_s"] <= row["duration_s"] + 1e-6
        assert voiced_seconds(waveform_of(row["audio"])) > 0.4 * row["duration_s"]
    assert voiced_seconds(np.zeros(32_000, np.float32)) == 0
    errors = [e["mean_boundary_error_ms"] for row in espeak for e in row["estimated_alignments"] if e["method"] == "whisper"]
    assert len(errors) == len(IDS) and np.median(errors) < 200, errors  # a wrong rate or offset: seconds apart
    piper = load_dataset(str(out), second.voice_config, split="train")
    for row in piper:
        assert row["alignment"]["method"] == "tts"
        (estimate,) = row["estimated_alignments"]
        assert estimate["method"] == "whisper" and len(estimate["words"]) == len(row["words"])
        assert 0 <= estimate["mean_boundary_error_ms"] <= estimate["max_boundary_error_ms"]
        assert estimate["flagged"] == (estimate["subject_iou"] < 0.5)
    qc = json.loads((out / "build_stats.json").read_text())[second.voice_config]["alignment_qc"]["whisper"]
    assert qc["items"] == len(IDS) and qc["median_boundary_error_ms"] <= qc["p95_boundary_error_ms"]


def test_protocol_gives_piper_word_times_and_reports_a_dead_worker():
    engine = create_engine("piper-subprocess", "en_US-joe-medium")
    spoken = verbalise("The capital of Italy is")
    synthesis = engine.synthesize(spoken)
    assert synthesis.sample_rate == 22050 and len(synthesis.word_times_s) == len(spoken.words)
    assert all(a <= b for a, b in synthesis.word_times_s)
    engine.process.kill()
    engine.process.wait()
    with pytest.raises(RuntimeError, match="worker exited"):
        engine.synthesize(spoken)
    with pytest.raises(RuntimeError, match="did not start: .*voice='nope'"):
        SubprocessEngine("x", "piper", "nope")


def test_external_folder_builds_and_a_missing_file_is_a_recorded_failure(tmp_path, source):
    folder = tmp_path / "studio-voice"
    folder.mkdir()
    by_id = {r["known_id"]: r for r in json.loads(source.read_text())}
    for known_id in IDS[:2]:  # the third is missing on purpose
        subprocess.run(["espeak-ng", "-v", "en-gb", "-w", str(folder / f"{known_id}.wav"),
                        verbalise(by_id[known_id]["prompt"]).text], check=True)
    (folder / "manifest.json").write_text(json.dumps(
        {"engine": "espeak-ng en-gb", "voice": "studio-voice", "files": {str(i): f"{i}.wav" for i in IDS}}))
    out = tmp_path / "known-speech"
    result = build_dataset(out, engine="external", voice=str(folder), source=str(source), workers=1)
    assert result.voice_config == "external-studio-voice"
    assert result.summary.failed == 1
    (failure,) = result.summary.failures
    assert failure.known_id == 65 and failure.stage == "synthesis" and "which does not exist" in failure.reason
    assert sorted(load_dataset(str(out), result.voice_config, split="train")["known_id"]) == [0, 21]
    with pytest.raises(ValueError, match="refusing to publish a build with failed items.*external-studio-voice: 1"):
        plan_publish(out, "me/known-speech", "v1.0.0")
    assert plan_publish(out, "me/known-speech", "v1.0.0", allow_failed=True).tag == "v1.0.0"


def test_publish_dry_run_lists_files_and_tag_and_refuses_reused_or_bad_tags(two_voices, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(two_voices[0], out)
    assert cli_main(["publish", "--repo", "me/known-speech", "--tag", "v1.0.0", "--dataset", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "tag: v1.0.0" in printed and "espeak-ng-en-us/train-00000-of-00001.parquet" in printed
    assert ".build" not in printed and "versions.json  (written at publish)" in printed
    (out / "versions.json").write_text(json.dumps([{"tag": "v1.0.0", "date": "2026-11-01", "voices": [],
                                                     "source_sha256": "", "toolkit_version": "0.1.0"}]))
    with pytest.raises(ValueError, match="tag v1.0.0 was already published"):
        plan_publish(out, "me/known-speech", "v1.0.0")
    assert cli_main(["publish", "--repo", "me/known-speech", "--tag", "latest", "--dataset", str(out), "--dry-run"]) == 2
