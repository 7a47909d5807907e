"""The paper's six token-position categories, and per-item effects averaged into them.

Categories are defined on the written prompt's text tokens relative to the corrupted span [s, e) of
n tokens: first / middle / last corrupted token, the first token after it, further tokens, the last
token. A one-token subject is both first and last; tokens before the span belong to none (their
restorations cannot change anything). For speech, the effect at each input position is first averaged
over the positions that voice the same text token, then over the category's text tokens.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CATEGORIES", "category_members", "category_effects", "category_labels"]

CATEGORIES: tuple[str, ...] = (
    "first subject token",
    "middle subject tokens",
    "last subject token",
    "first subsequent token",
    "further tokens",
    "last token",
)


def category_labels(span: str = "items") -> tuple[str, ...]:
    """The categories as a figure or table names them: of the control span where it was corrupted."""
    return CATEGORIES if span != "control" else tuple(c.replace("subject", "control-span") for c in CATEGORIES)


def category_members(corrupted: tuple[int, int], num_tokens: int) -> dict[str, list[int]]:
    """Text-token indices of each category."""
    start, end = corrupted
    if not 0 <= start < end <= num_tokens:
        raise ValueError(f"corrupted span {corrupted} is not inside 0..{num_tokens}")
    last = num_tokens - 1
    return {
        "first subject token": [start],
        "middle subject tokens": list(range(start + 1, end - 1)),
        "last subject token": [end - 1],
        "first subsequent token": [end] if end < last else [],
        "further tokens": list(range(end + 1, last)),
        "last token": [last],
    }


def category_effects(
    effects: np.ndarray, text_token_of_position: list[int | None], corrupted_text: tuple[int, int], num_tokens: int
) -> np.ndarray:
    """(positions, layers) effects -> (6, layers), NaN where a category has no token in this prompt."""
    layers = effects.shape[1]
    links = np.array([-1 if k is None else k for k in text_token_of_position])
    per_token = np.full((num_tokens, layers), np.nan)
    for token in range(num_tokens):
        rows = effects[links == token]
        if len(rows):
            per_token[token] = np.nanmean(rows, axis=0)
    table = np.full((len(CATEGORIES), layers), np.nan)
    for index, (category, tokens) in enumerate(category_members(corrupted_text, num_tokens).items()):
        values = per_token[tokens] if tokens else np.empty((0, layers))
        values = values[~np.isnan(values).all(axis=1)]
        if len(values):
            table[index] = values.mean(axis=0)
    return table
