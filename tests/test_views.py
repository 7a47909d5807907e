"""A model's filters and views as parquet configs of a real small build: `load_dataset` reads each of them,
speech views with their audio decoded. The filter rows are given here (random tiny models recall nothing;
the filter itself runs on the real SmolLM2 in test_evaluation.py)."""

import json
import shutil
from dataclasses import asdict, replace

import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from known_speech.builders.writer import render_card
from known_speech.cli import main as cli_main
from known_speech.evaluation.filtering import FilterRow
from known_speech.evaluation.report_tables import selection_label
from known_speech.evaluation.run_config import TraceRunConfig
from known_speech.evaluation.trace_run import calibration_records, select_records
from known_speech.evaluation.views import write_filter_views
from known_speech.layout import DatasetFolder

pytestmark = pytest.mark.slow

VOICE = "piper-en_US-joe-medium"


def _rows(folder: DatasetFolder, modality: str, matches: dict[int, str], voice_config: str = "", model: str = "m",
          subject: frozenset[int] = frozenset()) -> None:
    """Filter rows with the given matches; the recalled facts in `subject` are subject-dependent, the others not."""
    path = folder.filter_file(model, modality, voice_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [FilterRow(known_id, model, "hf-text", modality, voice_config, f" {match} answer", f"{match} answer", match,
                      subject_dependent=known_id in subject if match != "none" else None,
                      follows_subject=known_id in subject if match != "none" else None)
            for known_id, match in matches.items()]
    path.write_text("".join(json.dumps(asdict(row)) + "\n" for row in rows))


def test_views_are_parquet_configs_with_the_known_record_and_the_audio(spoken_dataset, tmp_path, capsys):
    out = tmp_path / "known-speech"
    shutil.copytree(spoken_dataset, out)
    folder = DatasetFolder(out)
    _rows(folder, "text", {0: "none", 3: "exact", 21: "exact", 65: "partial"}, subject=frozenset({21, 65}))
    _rows(folder, "speech", {0: "exact", 3: "none", 21: "partial", 65: "none", 182: "exact"}, VOICE,
          subject=frozenset({21}))
    written = write_filter_views(out, "m")
    assert {path.name for path in written} == {"text.parquet", f"speech-{VOICE}.parquet", "known_t2t-m.parquet",
                                               "known_s2t-m.parquet", "known_both-m.parquet", "text.recall.json",
                                               f"speech-{VOICE}.recall.json", "known_t2t_subject-m.parquet",
                                               "known_s2t_subject-m.parquet", "known_both_subject-m.parquet"}
    render_card(out)
    t2t = load_dataset(str(out), "known_t2t-m", split="train")
    assert sorted(t2t["known_id"]) == [3, 21, 65] and "audio" not in t2t.column_names
    rome = t2t.filter(lambda known_id: known_id == 21, input_columns="known_id")[0]
    assert (rome["prompt"], rome["subject"], rome["attribute"], rome["match"]) == \
        ("The capital of Roman Republic is", "Roman Republic", "Rome", "exact")
    s2t = load_dataset(str(out), "known_s2t-m", split="train")
    assert sorted(s2t["known_id"]) == [0, 21, 182] and set(s2t["voice_config"]) == {VOICE}
    row = s2t.filter(lambda known_id: known_id == 21, input_columns="known_id")[0]
    samples = row["audio"].get_all_samples()
    assert samples.sample_rate == 16_000 and samples.data.shape[1] == pytest.approx(row["duration_s"] * 16_000, abs=2)
    assert row["words"] and row["subject_time_span"][1] > row["subject_time_span"][0] and row["match"] == "partial"
    both = load_dataset(str(out), "known_both-m", split="train")
    assert both["known_id"] == [21] and (both[0]["text_match"], both[0]["speech_match"]) == ("exact", "partial")
    assert len(load_dataset(str(out), "filter-m", split="train")) == 9  # text and speech rows of the filter
    card = DatasetCard.load(out / "README.md")
    configs = {c["config_name"]: c["data_files"][0]["path"] for c in card.data.configs}
    assert configs["known_s2t-m"] == "views/known_s2t-m.parquet" and configs["filter-m"] == "filters/m/*.parquet"
    assert "| `known_both-m` | 1 |" in card.text
    # the subject views: the subject-dependent facts only, with both flags in Known-both
    assert load_dataset(str(out), "known_t2t_subject-m", split="train")["known_id"] == [21, 65]
    assert load_dataset(str(out), "known_s2t_subject-m", split="train")["known_id"] == [21]
    both_subject = load_dataset(str(out), "known_both_subject-m", split="train")
    assert both_subject["known_id"] == [21] and both_subject[0]["speech_subject_dependent"] is True
    assert "| `filter-m` | text |  | dev | 4 | 3 [" in card.text  # the recall figures, per split, in the card
    subject = TraceRunConfig(model="m", adapter="hf-text", modality="text", dataset=str(out), subject_dependent=True)
    assert [int(r["known_id"]) for r in select_records(subject)] == [21, 65] and subject.run_name == "text-subject"
    assert sorted(int(r["known_id"]) for r in calibration_records(subject, select_records(subject))) == [3, 21, 65]
    assert selection_label(subject) == "Known-t2t (subject)"
    # `trace --recalled-in both` selects the view's facts in either modality; sigma stays the modality's own
    speech = TraceRunConfig(model="m", adapter="hf-text", modality="speech", dataset=str(out), voice_config=VOICE,
                            recalled_in="both")
    for config, own in ((speech, [0, 21, 182]), (replace(speech, modality="text"), [3, 21, 65])):
        selection = select_records(config)
        assert [int(r["known_id"]) for r in selection] == both["known_id"]
        assert sorted(int(r["known_id"]) for r in calibration_records(config, selection)) == own
    assert replace(speech, modality="text").run_name == f"text-recalled-in-both-{VOICE}"
    assert [selection_label(c) for c in (speech, replace(speech, recalled_in="text"), replace(speech, recalled_in=None))] \
        == ["Known-both", "Known-t2t", "Known-s2t"]
    assert cli_main(["trace", "--model", "m", "--adapter", "hf-text", "--recalled-in", "both", "--dataset", str(out)]) == 2
    assert "a voice config (--config) is needed" in capsys.readouterr().err


def test_every_listed_view_loads_and_a_view_with_no_row_is_not_listed(tmp_path, capsys):
    """Model m recalls one fact from text, model n none: known_t2t-m is a config of one row, known_t2t-n none.
    The folder has filters and no voice: speech commands name the voice configs and how to make one."""
    out = tmp_path / "known-speech"
    folder = DatasetFolder(out)
    _rows(folder, "text", {3: "none", 21: "exact"})
    _rows(folder, "text", {3: "none", 21: "none"}, model="n")
    write_filter_views(out, "m"), write_filter_views(out, "n")
    configs = [config["config_name"] for config in render_card(out).data.configs]
    assert configs == ["filter-m", "filter-n", "known_t2t-m"]
    rows = {name: load_dataset(str(out), name, split="train") for name in configs}
    assert rows["known_t2t-m"]["known_id"] == [21] and len(rows["filter-n"]) == 2
    # an empty selection, or a prompt that is not in it, is refused with why and what to do, before a model loads
    trace = ["trace", "--model", "n", "--adapter", "hf-text", "--modality", "text", "--dataset", str(out)]
    assert cli_main(trace) == 2
    assert ("0 of 1209 prompts recalled from text by n: trace the facts recalled from text with --recalled-in text, "
            "every prompt with --unfiltered, chosen ones with --known-id") in capsys.readouterr().err
    assert cli_main([*trace[:2], "m", *trace[3:], "--known-id", "3", "21"]) == 2
    assert "--known-id 3: not among the 1 prompts recalled from text by m; pass --unfiltered" in capsys.readouterr().err
    for command in ("filter", "trace"):
        for config in ([], ["--config", VOICE]):
            assert cli_main([command, "--model", "m", "--modality", "speech", "--dataset", str(out), *config]) == 2
            error = capsys.readouterr().err
            assert f"; voice configs of {out}: none (`known-speech build --out {out}` makes one)" in error
            assert (f"--config {VOICE}: not a built voice config" if config else "a voice config (--config) is needed") in error
