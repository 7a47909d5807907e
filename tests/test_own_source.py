"""Your own facts, end to end: a dataset built from a custom source keeps it (source.json), and text filters,
traces and views read that source, not the bundled Known; a filter of another source is refused in one line."""

from __future__ import annotations

import json
import shutil

import pytest
from datasets import load_dataset

from known_speech.builders.build import build_dataset
from known_speech.cli import main as cli_main
from known_speech.evaluation.filtering import read_filter
from known_speech.layout import DatasetFolder

pytestmark = pytest.mark.slow

VOICE = "piper-en_US-joe-medium"
# facts none of whose subjects are in Known, with known_ids that Known does not use
OWN_FACTS = [
    {"known_id": 5000, "subject": "Mount Kilimanjaro", "attribute": "Africa", "relation_id": "P30",
     "template": "{} is located in the continent of", "prompt": "Mount Kilimanjaro is located in the continent of",
     "prediction": " Africa"},
    {"known_id": 5001, "subject": "Toyota Corolla", "attribute": "Toyota", "relation_id": "P176",
     "template": "{} is produced by", "prompt": "Toyota Corolla is produced by", "prediction": " Toyota"},
    {"known_id": 5002, "subject": "Angela Merkel", "attribute": "German", "relation_id": "P1412",
     "template": "The mother tongue of {} is", "prompt": "The mother tongue of Angela Merkel is",
     "prediction": " German"},
]


@pytest.fixture(scope="module")
def own_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    source = folder / "my_facts.json"
    source.write_text(json.dumps(OWN_FACTS), encoding="utf-8")
    out = folder / "ds"
    result = build_dataset(out, source=str(source), workers=1, aligners=("tts",))
    assert result.summary.failed == 0
    return out, source


def test_filters_and_a_trace_ask_the_datasets_own_facts(own_build, tmp_path, capsys):
    """One model (spirit-smollm2) filtered in both modalities and traced from text, all on the three facts."""
    out, source = own_build
    ids = {fact["known_id"] for fact in OWN_FACTS}
    assert (out / "source.json").read_bytes() == source.read_bytes()  # kept beside the configs, and published
    common = ["--model", "spirit-smollm2", "--dataset", str(out), "--no-probes"]
    assert cli_main(["filter", *common, "--modality", "text"]) == 0
    assert cli_main(["filter", *common, "--modality", "speech", "--config", VOICE]) == 0
    folder = DatasetFolder(out)
    text = read_filter(folder.filter_file("spirit-smollm2", "text"))
    speech = read_filter(folder.filter_file("spirit-smollm2", "speech", VOICE))
    print({k: (text[k].generation, text[k].match, speech[k].generation, speech[k].match) for k in sorted(ids)})
    assert set(text) == ids and set(speech) == ids  # not one bundled Known prompt asked
    assert set(load_dataset(str(out), "filter-spirit-smollm2", split="train")["known_id"]) == ids
    recalled = {k for k, row in text.items() if row.match != "none"}
    assert recalled, "the organism names none of three well-known facts from text"
    t2t = load_dataset(str(out), "known_t2t-spirit-smollm2", split="train")
    assert set(t2t["known_id"]) == recalled and set(t2t["subject"]) <= {f["subject"] for f in OWN_FACTS}
    both = recalled & {k for k, row in speech.items() if row.match != "none"}  # Known-both: the intersection
    if both:
        assert set(load_dataset(str(out), "known_both-spirit-smollm2", split="train")["known_id"]) == both
    else:
        assert not folder.view_file("known_both", "spirit-smollm2").exists()
    traced = sorted(recalled)[0]
    results = tmp_path / "results"
    assert cli_main(["trace", "--model", "spirit-smollm2", "--modality", "text", "--dataset", str(out), "--known-id",
                     str(traced), "--samples", "2", "--kinds", "hidden", "--out", str(results)]) == 0
    assert [p.stem for p in (results / "spirit-smollm2").glob("*/items/*.npz")] == [str(traced)]
    capsys.readouterr()
    # the same recall filter read with a dataset of another source (the bundled Known: nothing built) is refused
    other = tmp_path / "other"
    shutil.copytree(out, other)
    (other / "source.json").unlink()
    (other / "build_stats.json").unlink()
    assert cli_main(["trace", "--model", "spirit-smollm2", "--modality", "text", "--dataset", str(other),
                     "--samples", "2", "--kinds", "hidden", "--out", str(results / "other")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was made on another source than the dataset's" in err, err


def test_a_second_source_in_the_same_folder_is_refused(own_build, tmp_path, known_records):
    """Another voice config from another source would give the folder two sets of facts: refused before anything
    loads (an edited source for the same voice config is a rebuild: test_reliability)."""
    out, _ = own_build
    bundled = tmp_path / "known.json"
    bundled.write_text(json.dumps([r.to_dict() for r in known_records[:2]]), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"holds {VOICE} built from another source \(its source.json\); build this "
                                         r"one into another --out"):
        build_dataset(out, engine="espeak-ng", voice="en-us", source=str(bundled), workers=1)
    assert not (out / "espeak-ng-en-us").exists()


def test_a_speech_filter_of_items_built_again_is_stale(own_build, caplog):
    """A rebuild that changes the items (another aligner) makes the speech filter made on them stale: reading it
    says so, and the card marks it; the text filter (of the same source) is not."""
    import logging

    from known_speech.builders.writer import render_card
    from known_speech.evaluation.records import filter_rows

    out, _ = own_build
    folder = DatasetFolder(out)
    before = folder.items_sha256(VOICE)
    assert before and not any("(stale" in line for line in (out / "README.md").read_text().splitlines())
    again = build_dataset(out, source=str(out / "source.json"), workers=1, aligners=("tts", "whisper"))
    assert again.summary.rebuilt == {"aligners": 3} and folder.items_sha256(VOICE) != before
    with caplog.at_level(logging.WARNING):
        assert filter_rows(out, "spirit-smollm2", "speech", VOICE) and filter_rows(out, "spirit-smollm2", "text")
    stale = [r.getMessage() for r in caplog.records if "is stale" in r.getMessage()]
    assert len(stale) == 1 and f"{VOICE} has been built again since" in stale[0]
    card = render_card(out).text
    assert f"| `filter-spirit-smollm2` (stale: the voice config was built again since) | speech | {VOICE} |" in card
    assert "| `filter-spirit-smollm2` | text |" in card
