"""Whisper word timestamps as an alignment: faster-whisper's words matched to the spoken words.

The transcript need not equal the spoken form ("Benson" for "Vinson"); words are matched in order
(difflib on normalised words), and spoken words Whisper did not produce take the time between
their matched neighbours, with score 0.
"""

from __future__ import annotations

import difflib

from known_speech.spans import AlignedWord
from known_speech.spoken import SpokenForm

from ..asr import TimedWord, normalise_text
from .tts import written_words_from_spoken_times

__all__ = ["words_from_whisper"]


def _key(word: str) -> str:
    return normalise_text(word).replace(" ", "")


def words_from_whisper(spoken: SpokenForm, heard: list[TimedWord], duration_s: float) -> list[AlignedWord]:
    if not heard:
        raise ValueError("Whisper heard no words")
    spoken_keys = [_key(word.text) for word in spoken.words]
    matcher = difflib.SequenceMatcher(None, spoken_keys, [_key(w.word) for w in heard], autojunk=False)
    times: list[tuple[float, float] | None] = [None] * len(spoken.words)
    scores = [0.0] * len(spoken.words)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and a1 - a0 == b1 - b0):
            for offset in range(a1 - a0):  # same position, different spelling: still that word's time
                word = heard[b0 + offset]
                times[a0 + offset] = (word.start_s, word.end_s)
                scores[a0 + offset] = word.probability if tag == "equal" else 0.5 * word.probability
        elif tag == "replace":  # n spoken words heard as m words: share the heard span evenly
            start, end = heard[b0].start_s, heard[b1 - 1].end_s
            step = (end - start) / (a1 - a0)
            for offset in range(a1 - a0):
                times[a0 + offset] = (start + offset * step, start + (offset + 1) * step)
    filled: list[tuple[float, float]] = []
    for index, span in enumerate(times):
        if span is None:  # not heard: between the previous word's end and the next heard word's start
            previous = filled[-1][1] if filled else 0.0
            following = next((t[0] for t in times[index + 1:] if t is not None), duration_s)
            span = (previous, max(previous, following))
        filled.append(span)
    return written_words_from_spoken_times(spoken, filled, scores)
