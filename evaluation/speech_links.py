"""Speech positions to the text tokens they voice, through the record's word alignment."""

from __future__ import annotations

import numpy as np

from known_speech.spans import frame_span
from known_speech.tracing.prompts import tokens_overlapping

__all__ = ["text_tokens_of_times", "text_tokens_of_frames", "subject_frames"]


def text_tokens_of_times(midpoints_s: np.ndarray, words: list[dict], token_char_spans: list[tuple[int, int]]) -> list[int]:
    """For each speech position (the midpoint of the audio it voices, in seconds), the text token it voices.

    A position belongs to the aligned word its midpoint falls in (the nearest word in silences); a word
    spoken as several text tokens is split among them in proportion to their characters.
    """
    if not words:
        raise ValueError("the record has no aligned words")
    midpoints = np.asarray(midpoints_s, dtype=float)
    word_starts = np.array([w["start_s"] for w in words])
    word_ends = np.array([w["end_s"] for w in words])
    links: list[int] = []
    for midpoint in midpoints:
        inside = np.flatnonzero((word_starts <= midpoint) & (midpoint < word_ends))
        if inside.size:
            index = int(inside[0])
        else:
            distance = np.maximum(word_starts - midpoint, midpoint - word_ends)
            index = int(np.argmin(distance))
        word = words[index]
        tokens = tokens_overlapping(token_char_spans, word["char_start"], word["char_end"])
        if not tokens:
            raise ValueError(f"no text token overlaps word {word['word']!r}")
        widths = np.array([max(1, min(token_char_spans[k][1], word["char_end"]) - max(token_char_spans[k][0], word["char_start"]))
                           for k in tokens], dtype=float)
        bounds = word["start_s"] + (word["end_s"] - word["start_s"]) * np.cumsum(widths) / widths.sum()
        links.append(tokens[min(int(np.searchsorted(bounds, midpoint, side="right")), len(tokens) - 1)])
    return links


def text_tokens_of_frames(frame_starts: np.ndarray, num_frames: int, rate_hz: float, words: list[dict],
                          token_char_spans: list[tuple[int, int]]) -> list[int]:
    """`text_tokens_of_times` for runs of frames at `rate_hz` starting at `frame_starts`."""
    frame_starts = np.asarray(frame_starts)
    frame_ends = np.append(frame_starts[1:], num_frames)
    return text_tokens_of_times((frame_starts + frame_ends) / 2.0 / rate_hz, words, token_char_spans)


def subject_frames(record: dict, rate_hz: float) -> tuple[int, int]:
    start_s, end_s = record["subject_time_span"]
    return frame_span(start_s, end_s, rate_hz)
