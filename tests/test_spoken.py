import re

import pytest

from known_speech.spoken import number_to_words, verbalise


@pytest.mark.parametrize(
    "written, spoken",
    [
        ("LGA 775 is created by", "LGA seven hundred seventy-five is created by"),
        ("written in the early 1980s, when the", "written in the early nineteen eighties when the"),
        ("Henry Somerset, 7th Duke of Beaufort", "Henry Somerset seventh Duke of Beaufort"),
        ("Chatto & Windus was formed in", "Chatto and Windus was formed in"),
        ("Windows Embedded CE 6.0 is", "Windows Embedded CE six point oh is"),
        ("iPhone 4s is developed by", "iPhone four S is developed by"),
        ("2005 Australian Open", "two thousand five Australian Open"),
        ("B-29 Superfortress", "B twenty-nine Superfortress"),
        ("Kyōto Prefecture, which", "Kyōto Prefecture which"),
    ],
)
def test_verbalise_examples(written, spoken):
    assert verbalise(written).text == spoken


def test_number_to_words_is_american_and_plain():
    assert number_to_words("775") == "seven hundred seventy-five"
    assert number_to_words("1,000") == "one thousand"
    assert number_to_words("21", "st") == "twenty-first"
    assert number_to_words("90", "s") == "nineties"


def _hard(record):
    return re.search(r"[0-9&%]|[^\x00-\x7f]", record.prompt)


def test_every_hard_prompt_of_the_real_set_verbalises_and_maps_back(known_records):
    hard = [r for r in known_records if _hard(r)]
    digit = [r for r in hard if re.search(r"\d", r.prompt)]
    ampersand = [r for r in hard if "&" in r.prompt]
    non_ascii = [r for r in hard if re.search(r"[^\x00-\x7f]", r.prompt)]
    assert (len(digit), len(ampersand), len(non_ascii)) == (77, 6, 9)
    for record in hard:
        spoken = verbalise(record.prompt)
        assert not re.search(r"[0-9&%]", spoken.text), (record.known_id, spoken.text)
        # every spoken word points at a written word whose characters are in the prompt
        for word in spoken.words:
            written = spoken.written_words[word.written_index]
            assert record.prompt[written.char_start : written.char_end] == written.text
        # the subject is spoken, and its spoken words come from inside the subject's characters
        start, end = record.subject_char_span
        subject_words = spoken.spoken_indices_in(start, end)
        assert subject_words, record.known_id
        for index in subject_words:
            written = spoken.written_words[spoken.words[index].written_index]
            assert written.char_start < end and start < written.char_end


def test_every_prompt_of_the_real_set_has_spoken_words(known_records):
    for record in known_records:
        spoken = verbalise(record.prompt)
        assert spoken.text.strip(), record.known_id
        assert spoken.spoken_text_in(*record.subject_char_span), record.known_id
