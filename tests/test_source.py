import pytest

from known_speech.source import KNOWN_SHA256, KnownSourceError, bundled_source_path, file_sha256, load_known

GOOD = {
    "known_id": 7,
    "subject": "Vinson Massif",
    "attribute": "Antarctica",
    "template": "{} is located in the continent",
    "prompt": "Vinson Massif is located in the continent of",
    "relation_id": "P30",
}


def test_bundled_known_set_loads_whole_and_valid(known_records):
    assert len(known_records) == 1209
    assert len({r.known_id for r in known_records}) == 1209
    assert len({r.relation_id for r in known_records}) == 33
    assert file_sha256(bundled_source_path()) == KNOWN_SHA256
    for record in known_records:
        start, end = record.subject_char_span
        assert record.prompt[start:end] == record.subject


@pytest.mark.parametrize(
    "change, field",
    [
        ({"subject": None}, "subject"),
        ({"known_id": "7"}, "known_id"),
        ({"prompt": "   "}, "prompt"),
        ({"subject": "Mount Everest"}, "subject"),
    ],
)
def test_malformed_record_names_record_and_field(write_source, change, field):
    bad = {**GOOD, **change}
    if change.get("subject", "") is None:
        del bad["subject"]
    path = write_source([GOOD | {"known_id": 1}, bad])
    with pytest.raises(KnownSourceError, match=rf"record #1 \(known_id=.*\).*'{field}'"):
        load_known(path)


def test_duplicate_known_id_is_named(write_source):
    path = write_source([GOOD, GOOD | {"subject": "Vinson"}])
    with pytest.raises(KnownSourceError, match=r"record #1 \(known_id=7\): field 'known_id' duplicates record #0"):
        load_known(path)


def test_not_a_list_and_not_json(write_source, tmp_path):
    with pytest.raises(KnownSourceError, match="expected a JSON list"):
        load_known(write_source({"records": []}))
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    with pytest.raises(KnownSourceError, match="not valid JSON"):
        load_known(broken)


def test_other_source_file_in_same_format(write_source):
    records = load_known(write_source([GOOD, GOOD | {"known_id": 8, "prompt": "Where is Vinson Massif? In"}]))
    assert [r.known_id for r in records] == [7, 8]
    assert records[1].subject_char_span == (9, 22)
