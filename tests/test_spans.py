import pytest

from known_speech.spans import AlignedWord, frame_span, time_span_of_chars


@pytest.mark.parametrize(
    "start, end, rate, expected",
    [
        (0.2, 0.6, 25, (5, 15)),  # exact frame boundaries stay exact
        (0.21, 0.61, 25, (5, 16)),  # floor the start, ceil the end
        (0.035, 0.801, 50, (1, 41)),
        (0.0, 0.04, 25, (0, 1)),
    ],
)
def test_frame_span_follows_paper_formula(start, end, rate, expected):
    assert frame_span(start, end, rate) == expected


def test_frame_span_rejects_reversed_span():
    with pytest.raises(ValueError, match="before start_s"):
        frame_span(1.0, 0.5, 25)


def test_time_span_of_chars_covers_overlapping_words():
    words = [
        AlignedWord("Vinson", 0, 6, 0.03, 0.36, 1.0),
        AlignedWord("Massif", 7, 13, 0.38, 0.80, 1.0),
        AlignedWord("is", 14, 16, 0.87, 0.96, 1.0),
    ]
    assert time_span_of_chars(words, 0, 13) == (0.03, 0.80)
    assert time_span_of_chars(words, 8, 9) == (0.38, 0.80)
    with pytest.raises(ValueError, match="no aligned word"):
        time_span_of_chars(words, 30, 40)
