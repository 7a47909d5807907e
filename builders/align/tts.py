"""TTS-exact alignment: the synthesiser's own word times, mapped back to the written prompt."""

from __future__ import annotations

from known_speech.spans import AlignedWord
from known_speech.spoken import SpokenForm

from ..tts.base import Synthesis

__all__ = ["words_from_synthesis", "written_words_from_spoken_times"]


def written_words_from_spoken_times(
    spoken: SpokenForm, times_s: list[tuple[float, float]], scores: list[float]
) -> list[AlignedWord]:
    """Merge spoken-word times into written words ("seven hundred seventy-five" -> "775")."""
    if len(times_s) != len(spoken.words) or len(scores) != len(spoken.words):
        raise ValueError(
            f"got {len(times_s)} word times and {len(scores)} scores for {len(spoken.words)} spoken words"
        )
    aligned: list[AlignedWord] = []
    for written_index, written in enumerate(spoken.written_words):
        members = [i for i, word in enumerate(spoken.words) if word.written_index == written_index]
        aligned.append(
            AlignedWord(
                word=written.text,
                char_start=written.char_start,
                char_end=written.char_end,
                start_s=min(times_s[i][0] for i in members),
                end_s=max(times_s[i][1] for i in members),
                score=sum(scores[i] for i in members) / len(members),
            )
        )
    return aligned


def words_from_synthesis(spoken: SpokenForm, synthesis: Synthesis) -> list[AlignedWord]:
    if synthesis.word_times_s is None:
        raise ValueError("the TTS engine reported no word durations")
    scores = synthesis.word_scores or [1.0] * len(synthesis.word_times_s)
    return written_words_from_spoken_times(spoken, synthesis.word_times_s, scores)
