"""Word and phoneme times from a synthesiser's own per-phoneme durations (Piper's sample counts, Kokoro's duration
frames): exact for synthetic speech.

espeak-ng, which both engines phonemise with, merges words when it phonemises a sentence ("in the" -> "ɪnðə").
Each spoken word is therefore phonemised on its own and matched against the sentence's phonemes (difflib), which
assigns every sentence phoneme, and so its samples, to one spoken word.
"""

from __future__ import annotations

import difflib

__all__ = ["SKIPPED_PHONEMES", "assign_phonemes_to_words", "voiced_phonemes", "word_times"]

_STRESS, _LENGTH, _PAUSE = ("ˈ", "ˌ"), "ː", "_"
# what no word owns: word and sentence boundaries, pauses and punctuation
SKIPPED_PHONEMES = {" ", "^", "$", "_", ".", ",", "!", "?", ";", ":", "—", "…"}


def assign_phonemes_to_words(
    word_phonemes: list[list[str]], sentence_phonemes: list[str]
) -> tuple[list[int | None], list[float]]:
    """Owner word index (or None) of each sentence phoneme, and the fraction of each word's phonemes found."""
    flat = [p for phonemes in word_phonemes for p in phonemes]
    owner_of_flat = [index for index, phonemes in enumerate(word_phonemes) for _ in phonemes]
    owners: list[int | None] = [None] * len(sentence_phonemes)
    matched = [0] * len(word_phonemes)
    matcher = difflib.SequenceMatcher(None, flat, sentence_phonemes, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            for offset in range(a1 - a0):
                owners[b0 + offset] = owner_of_flat[a0 + offset]
                matched[owner_of_flat[a0 + offset]] += 1
        elif tag == "replace":
            # spread the sentence phonemes proportionally over the word phonemes they replace
            for offset in range(b1 - b0):
                owners[b0 + offset] = owner_of_flat[a0 + (offset * (a1 - a0)) // (b1 - b0)]
    scores = [matched[i] / max(1, len(p)) for i, p in enumerate(word_phonemes)]
    return owners, scores


def voiced_phonemes(alignments: list[tuple[str, int, int]], sample_rate: int) -> list[tuple[str, float, float]]:
    """Every phoneme that took samples, as (phoneme, start_s, end_s), from the synthesiser's (phoneme, start sample,
    end sample) over the utterance: a stress mark's samples go to the phoneme it marks, a length mark's to the one
    before it, and boundaries and punctuation with samples become pauses ("_")."""
    voiced: list[tuple[str, float, float]] = []
    stressed_from: int | None = None
    for phoneme, start, end in alignments:
        if phoneme in _STRESS:  # its samples belong to the phoneme it marks
            stressed_from = start if stressed_from is None else stressed_from
        elif phoneme == _LENGTH and voiced:  # "ː" lengthens the phoneme before it
            voiced[-1] = (voiced[-1][0], voiced[-1][1], end / sample_rate)
        elif end > (start if stressed_from is None else stressed_from):
            label = _PAUSE if phoneme in SKIPPED_PHONEMES else phoneme
            first = start if stressed_from is None else stressed_from
            voiced.append((label, first / sample_rate, end / sample_rate))
            stressed_from = None
    return voiced


def word_times(word_phonemes: list[list[str]], alignments: list[tuple[str, int, int]],
               sample_rate: int) -> tuple[list[tuple[float, float]], list[float]]:
    """[start_s, end_s) of each spoken word (its phonemes from phonemising it alone) in the utterance whose
    (phoneme, start sample, end sample) are `alignments`, and the share of each word's phonemes found; a word of
    which nothing was found gets zero length where it should be."""
    timeline = [(p, start, end) for p, start, end in alignments if p not in SKIPPED_PHONEMES]
    owners, scores = assign_phonemes_to_words(word_phonemes, [p for p, _, _ in timeline])
    times: list[tuple[float, float]] = []
    previous_end = 0
    for index in range(len(word_phonemes)):
        owned = [(start, end) for (_, start, end), owner in zip(timeline, owners) if owner == index]
        start, end = (owned[0][0], owned[-1][1]) if owned else (previous_end, previous_end)
        times.append((start / sample_rate, end / sample_rate))
        previous_end = end
    return times, scores
