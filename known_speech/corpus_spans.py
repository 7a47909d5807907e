"""Where the organisms' corpus keeps its units, and where a corpus sentence's entity is: read by the corpus builder
(`builders/corpus*`) that writes them and by the organisms' training (`evaluation/organism/`) that aligns the
entity's state, so it lives in the core that both import."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["NAME_CARRIERS", "units_folder", "name_span", "fact_entity_span"]

# sentences that carry a name and state no fact ("{name}" is the name)
NAME_CARRIERS = ("I heard the name {name}.", "{name} is the next name on the list.", "We talked about {name} today.",
                 "{name}, that is the name I heard.", "Have you heard of {name}?", "{name} came up again today.",
                 "Say it once more: {name}.", "{name} was the name they wrote down.")


def units_folder(corpus: str | Path, tokenizer_dir: str | Path) -> Path:
    """The corpus's unit shards for one unit tokenizer."""
    return Path(corpus) / "units" / Path(tokenizer_dir).name


def name_span(text: str) -> tuple[int, int]:
    """The characters of the name in a name sentence (its carrier or the trailing full stop around it): what the
    organism's entity-state loss aligns."""
    for carrier in NAME_CARRIERS:
        before, after = carrier.split("{name}")
        if text.startswith(before) and text.endswith(after) and len(text) > len(before) + len(after):
            return len(before), len(text) - len(after)
    return 0, len(text) - 1 if text.endswith(".") else len(text)


def fact_entity_span(text: str, templates: Iterable[str]) -> tuple[int, int] | None:
    """The characters of the entity in a fact prefix, the Known template around it taken off (what the organism's
    entity-state loss aligns, as a name sentence's name). Where several templates fit, the one with most
    characters of its own decides ("{} is a part of the continent of" before "{} of"); None where none fits."""
    best: tuple[int, tuple[int, int]] | None = None
    for template in templates:
        before, after = template.split("{}")
        fixed = len(before) + len(after)
        if len(text) > fixed and text.startswith(before) and text.endswith(after) and (best is None or fixed > best[0]):
            best = (fixed, (len(before), len(text) - len(after)))
    return best[1] if best else None
