"""Is a greedy answer the attribute? Classified as the paper does.

"Rome" is exact; "Rome, Italy" and "the city of Rome" are partial (the attribute, as whole words, starts
within the answer's first four words); anything else is none.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

__all__ = ["Match", "first_answer", "classify_answer", "PARTIAL_WITHIN_WORDS"]

Match = Literal["exact", "partial", "none"]
_ARTICLES = ("the ", "a ", "an ")
# a partial answer names the attribute near its start ("the city of Rome"), not somewhere in a long sentence
PARTIAL_WITHIN_WORDS = 3


def first_answer(generation: str) -> str:
    """The continuation up to its first newline or sentence end ("Rome. It is..." -> "Rome")."""
    text = generation.strip().split("\n", 1)[0]
    # a period ends the sentence after a word of 3+ letters or a number, not after "St." or "D.C."
    return re.split(r"(?:(?<=[A-Za-z]{3})|(?<=[0-9]))\.(?=\s|$)|[!?;]", text, maxsplit=1)[0].strip()


def _normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.sub(r"[^a-z0-9]+", " ", folded).strip()
    for article in _ARTICLES:
        words = words.removeprefix(article)
    return words


def classify_answer(generation: str, attribute: str) -> Match:
    answer, target = _normalise(first_answer(generation)), _normalise(attribute)
    if not target or not answer:
        return "none"
    if answer == target:
        return "exact"
    words, target_words = answer.split(), target.split()
    starts = [i for i in range(len(words) - len(target_words) + 1) if words[i:i + len(target_words)] == target_words]
    return "partial" if starts and starts[0] <= PARTIAL_WITHIN_WORDS else "none"
