"""The sentences of the speech corpus that `spirit-smollm2` learns to listen on: Debian's fortune cookies.

Debian's `fortunes` package (fortune-mod's data files; BSD licence per /usr/share/doc/fortunes/copyright)
holds about 2.6 MB of English quotations, jokes and aphorisms: many speakers' styles, names, numbers and
rare words, which a tokenizer of speech needs. Each fortune is split into sentences (pysbd), and a sentence
is kept when it is plain English prose of `min_words`..`max_words` words that verbalise can read.

The corpus must not teach the facts that Known asks: a sentence that holds a Known prompt, or a Known
subject (or another name of it: `corpus_leaks`) beside its attribute, is dropped (and counted), so that recall
from speech measures what carried over from the backbone's text training. Names alone are kept: the model must
learn to hear them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from known_speech.corpus_spans import NAME_CARRIERS
from known_speech.source import KnownRecord

from .corpus_leaks import KnownFacts, normalised

__all__ = ["CorpusSentence", "SentenceSelection", "FORTUNES_DIR", "FORTUNES_LICENCE", "read_fortunes",
           "select_sentences", "held_out", "NAME_SOURCES", "DEFAULT_NAME_CARRIERS", "check_name_carriers",
           "name_sentences"]

logger = logging.getLogger(__name__)

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_LICENCE = "BSD (fortune-mod data files, Debian package `fortunes`; /usr/share/doc/fortunes/copyright)"
# characters a kept sentence may hold: letters, digits, spaces and prose punctuation
_PLAIN = re.compile(r"^[A-Z][A-Za-z0-9 ,.;:!?'\"()-]*[.!?]$")
_ATTRIBUTION = re.compile(r"^\s*(--|―|—)")
_SPACES = re.compile(r"\s+")
# dialogue and list markers: "Q:", "A:", "(1)", "1." at the start
_MARKUP = re.compile(r"^(?:[A-Z][a-z]*:|\(\w\)|\d+\.)\s")


@dataclass(frozen=True)
class CorpusSentence:
    sentence_id: str  # sha1 of the text, first 12 hex digits: stable across runs and sources
    text: str
    source: str  # the fortune file it came from, "names:<source>" or "facts:<source>:<type>"
    continuation: str = ""  # a fact prefix's: the backbone's continuation; the sentence is spoken as a prefix only


@dataclass
class SentenceSelection:
    sentences: list[CorpusSentence]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def to_dict(self) -> dict:
        return {"sentences": len(self.sentences), "dropped": self.dropped}


def _fortunes_of(path: Path) -> list[str]:
    """The fortunes of one data file, attribution lines removed, lines joined."""
    text = path.read_text(encoding="utf-8", errors="replace")
    fortunes = []
    for block in text.split("\n%\n"):
        lines = [line for line in block.splitlines() if line.strip() and not _ATTRIBUTION.match(line)]
        if lines:
            fortunes.append(_SPACES.sub(" ", " ".join(lines)).strip())
    return fortunes


def read_fortunes(folder: str | Path = FORTUNES_DIR) -> list[tuple[str, str]]:
    """(source file, fortune) for every data file of Debian's fortunes (the files with a .dat index)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.with_name(p.name + ".dat").exists())
    if not files:
        raise ValueError(f"{folder}: no fortune data files (install Debian's `fortunes`: apt-get install fortunes)")
    return [(path.name, fortune) for path in files for fortune in _fortunes_of(path)]


def _sentence_id(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def select_sentences(fortunes: list[tuple[str, str]], known: list[KnownRecord], min_words: int = 5,
                     max_words: int = 25) -> SentenceSelection:
    """Clean, distinct sentences of `min_words`..`max_words` words, none teaching a Known fact."""
    import pysbd

    from known_speech.spoken import verbalise

    segmenter = pysbd.Segmenter(language="en", clean=False)
    dropped: dict[str, int] = {}
    seen: set[str] = set()
    facts = KnownFacts(known)
    kept: list[CorpusSentence] = []

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for source, fortune in fortunes:
        for sentence in segmenter.segment(fortune):
            sentence = sentence.strip()
            words = sentence.split()
            if not min_words <= len(words) <= max_words:
                drop("length")
                continue
            if not _PLAIN.match(sentence) or _MARKUP.match(sentence) or sentence.count('"') % 2:
                drop("not plain prose")
                continue
            key = normalised(sentence)
            if key in seen:
                drop("duplicate")
                continue
            seen.add(key)
            reason = facts.reason(sentence)
            if reason:
                drop(reason)
                logger.info("dropped (%s): %s", reason, sentence)
                continue
            try:
                verbalise(sentence)
            except ValueError:
                drop("cannot be verbalised")
                continue
            kept.append(CorpusSentence(_sentence_id(sentence), sentence, source))
    kept.sort(key=lambda s: s.sentence_id)  # a fixed order that mixes the sources
    return SentenceSelection(kept, dict(sorted(dropped.items())))


NAME_SOURCES = {"known-subjects": "the subjects of Known's 1,209 prompts (MIT, rome's known_1000.json)"}
# carriers that state nothing about the name; a Known prompt puts its subject first as often as last, so half
# the carriers do too (alternating, so that consecutive carriers put the name in both places)
DEFAULT_NAME_CARRIERS = 4


def check_name_carriers(carriers: int) -> None:
    """--name-carriers: how many of NAME_CARRIERS each name is spoken in, besides alone."""
    if not 0 <= carriers <= len(NAME_CARRIERS):
        raise ValueError(f"--name-carriers {carriers}: choose from 0 to {len(NAME_CARRIERS)}")


def name_sentences(source: str, known: list[KnownRecord], carriers: int = DEFAULT_NAME_CARRIERS) -> SentenceSelection:
    """Names spoken alone and in carriers that state no fact ("Names alone are fine, and needed": a model
    that has heard fortunes only hears no names). Each name gives "<name>." and `carriers` carrier sentences,
    consecutive in NAME_CARRIERS from a start chosen by the name's hash (run 7 had one: 8 of Known's first
    100 subjects transcribed whole); a sentence that the Known fact check flags or verbalise cannot read is
    dropped and counted, as fortunes are."""
    from known_speech.spoken import verbalise

    if source not in NAME_SOURCES:
        raise ValueError(f"--names {source!r}: choose from {', '.join(NAME_SOURCES)}")
    check_name_carriers(carriers)
    facts, kept, seen, dropped = KnownFacts(known), [], set(), {}
    for name in dict.fromkeys(r.subject.strip() for r in known):
        start = int(_sentence_id(name), 16) % len(NAME_CARRIERS)
        chosen = [NAME_CARRIERS[(start + i) % len(NAME_CARRIERS)] for i in range(carriers)]
        for text in [name.rstrip(".") + "."] + [carrier.format(name=name) for carrier in chosen]:
            reason = None if normalised(text) not in seen else "duplicate"
            seen.add(normalised(text))
            reason = reason or facts.reason(text)
            if reason is None:
                try:
                    verbalise(text)
                except ValueError:
                    reason = "cannot be verbalised"
            if reason:
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            kept.append(CorpusSentence(_sentence_id(text), text, f"names:{source}"))
    kept.sort(key=lambda s: s.sentence_id)
    return SentenceSelection(kept, dict(sorted(dropped.items())))


def held_out(sentence_id: str, fraction: float = 0.02) -> bool:
    """Whether a sentence belongs to the held-out split: decided by its id, so any subset agrees."""
    return int(sentence_id[:8], 16) / 0xFFFFFFFF < fraction


def selection_dict(selection: SentenceSelection) -> dict:
    return {**selection.to_dict(), "licence": FORTUNES_LICENCE, "examples": [asdict(s) for s in selection.sentences[:3]]}
