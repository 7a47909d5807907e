"""The speech corpus of spirit-smollm2: its sentences, the real Piper build (resumable, word and phoneme times),
Whisper k-means unit tokenizers with provenance, and the purity / PNMI measures."""

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from known_speech.builders.corpus_text import FORTUNES_DIR, read_fortunes, select_sentences
from known_speech.source import KnownRecord
from known_speech.unit_quality import frame_labels, unit_quality


def _fortune_folder(tmp_path, fortunes: list[str]):
    """A fortune data file as Debian lays them out (fortunes separated by '%', an index beside it)."""
    (tmp_path / "quotes").write_text("\n%\n".join(fortunes) + "\n%\n", encoding="utf-8")
    (tmp_path / "quotes.dat").write_bytes(b"")
    return tmp_path


def test_sentences_drop_known_facts_but_keep_names(tmp_path):
    known = [KnownRecord(0, "Vinson Massif", "Antarctica", "{} is located in the continent of",
                         "Vinson Massif is located in the continent of", "P30")]
    folder = _fortune_folder(tmp_path, [
        "We climbed the Vinson Massif in Antarctica last winter. It was very cold up there.",
        "Everyone says that Vinson Massif is located in the continent of ice.",
        "Nobody has ever met Vinson Massif at a party before.",
        "Q: Why? A: Because.\n\t\t-- Anonymous",
        "Short one.",
    ])
    selection = select_sentences(read_fortunes(folder), known)
    texts = [s.text for s in selection.sentences]
    assert "It was very cold up there." in texts
    assert "Nobody has ever met Vinson Massif at a party before." in texts  # a name alone is kept
    assert not any("Antarctica" in t for t in texts)
    assert not any("located in the continent" in t for t in texts)
    assert selection.dropped["holds a Known subject beside its attribute"] == 1
    assert selection.dropped["holds a Known prompt"] == 1
    assert all(len(s.sentence_id) == 12 for s in selection.sentences)


def test_a_known_fact_said_with_another_name_of_its_subject_is_refused(known_records):
    """Known's "Kingdom of Hungary" → Budapest and "United Kingdom of the Netherlands" → Amsterdam: no exact string
    of either subject is in these sentences, yet they teach the facts; the check refuses them by the subject's other
    names, and refuses those names as fact-prefix entities. A name without its attribute, or the attribute alone,
    is kept."""
    from known_speech.builders.corpus_leaks import HOLDS_ALIAS, IS_ALIAS, IS_SUBJECT, KnownFacts, subject_aliases

    facts_of = {(r.subject, r.attribute) for r in known_records}
    assert {("Kingdom of Hungary", "Budapest"), ("United Kingdom of the Netherlands", "Amsterdam")} <= facts_of
    facts = KnownFacts(known_records)
    assert facts.reason("The capital city of Hungary is Budapest.") == HOLDS_ALIAS
    assert facts.reason("The capital of The Netherlands is Amsterdam, they say.") == HOLDS_ALIAS
    assert facts.reason("Hungary is a country in Europe.") is None and facts.reason("Budapest has bridges.") is None
    assert facts.names_subject("Hungary") == IS_ALIAS and facts.names_subject("Kingdom of Hungary") == IS_SUBJECT
    assert facts.names_subject("Shanghai") is None
    assert {"hungary"} <= subject_aliases("Kingdom of Hungary")
    assert "netherlands" in subject_aliases("United Kingdom of the Netherlands")
    assert subject_aliases("Massachusetts Institute of Technology") == {"massachusetts institute of technology"}


@pytest.mark.skipif(not (FORTUNES_DIR / "fortunes.dat").exists(), reason="Debian's fortunes is not installed")
def test_the_debian_fortunes_give_over_ten_thousand_sentences(known_records):
    fortunes = read_fortunes()
    selection = select_sentences(fortunes[:3000], known_records)
    assert len(selection.sentences) > 1000
    assert all(5 <= len(s.text.split()) <= 25 for s in selection.sentences)


def test_unit_quality_measures():
    labels = [["a", "a", "b", "b", "c", None]]
    perfect = unit_quality([np.array([0, 0, 1, 1, 2, 2])], labels)
    assert perfect.phone_purity == pytest.approx(1.0) and perfect.pnmi == pytest.approx(1.0)
    assert perfect.dedup_removed == pytest.approx(3 / 6)
    merged = unit_quality([np.array([0, 0, 0, 0, 1, 1])], labels)  # a and b share one unit
    assert merged.phone_purity == pytest.approx(3 / 5)
    assert 0 < merged.pnmi < 1
    constant = unit_quality([np.array([7] * 6)], labels)
    assert constant.pnmi == pytest.approx(0.0)
    phonemes = [{"phoneme": "_", "start_s": 0.0, "end_s": 0.05}, {"phoneme": "h", "start_s": 0.05, "end_s": 0.1}]
    assert frame_labels(phonemes, 4, 25.0) == ["_", "h", None, None]


def test_names_are_spoken_alone_and_in_carriers_that_state_no_fact(known_records):
    """Each Known subject gives "<name>." and DEFAULT_NAME_CARRIERS carrier sentences, with the name first in
    some and last in others (as Known's prompts have it); none holds a Known attribute or prompt, and an
    unknown source or carrier count is refused by name."""
    from known_speech.builders.corpus_leaks import KnownFacts
    from known_speech.builders.corpus_text import DEFAULT_NAME_CARRIERS, name_sentences
    from known_speech.corpus_spans import NAME_CARRIERS, name_span

    selection = name_sentences("known-subjects", known_records)
    subjects = list(dict.fromkeys(r.subject.strip() for r in known_records))
    texts = {s.text for s in selection.sentences}
    per_name = 1 + DEFAULT_NAME_CARRIERS
    assert len(texts) == len(selection.sentences) == per_name * len(subjects) - sum(selection.dropped.values())
    alone = [f"{name.rstrip('.')}." for name in subjects]
    assert sum(t in texts for t in alone) >= 0.95 * len(subjects)
    facts = KnownFacts(known_records)
    assert not [t for t in texts if facts.reason(t)]
    carried = [t for t in texts if t not in alone]
    possible = {carrier.format(name=name): carrier for carrier in NAME_CARRIERS for name in subjects}
    assert len(carried) >= 0.95 * DEFAULT_NAME_CARRIERS * len(subjects) and all(t in possible for t in carried)
    name_first = [t for t in carried if possible[t].startswith("{name}")]
    assert 0.4 < len(name_first) / len(carried) < 0.6  # the name first in half of them
    first = subjects[0]
    assert sum(t in texts for t in [carrier.format(name=first) for carrier in NAME_CARRIERS]) == DEFAULT_NAME_CARRIERS
    assert len(name_sentences("known-subjects", known_records, carriers=1).sentences) < len(texts) / 2
    # the name in each sentence, for the organism's entity-state loss: always the Known subject spoken there
    stripped = {name.rstrip(".") for name in subjects}
    assert all(t[slice(*name_span(t))] in stripped | set(subjects) for t in texts)
    with pytest.raises(ValueError, match="--names 'wikipedia': choose from known-subjects"):
        name_sentences("wikipedia", known_records)
    with pytest.raises(ValueError, match="--name-carriers 9: choose from 0 to 8"):
        name_sentences("known-subjects", known_records, carriers=9)


@pytest.mark.slow
def test_corpus_build_resumes_and_records_exact_times(tmp_path, known_records):
    """Two sentences of real Piper speech: whole and a prefix spoken alone, word and phoneme times inside the
    audio; deleting one shard's files and running again rebuilds that shard only."""
    from known_speech.builders.corpus import CorpusOptions, build_corpus, load_corpus

    (tmp_path / "fortunes").mkdir()
    folder = _fortune_folder(tmp_path / "fortunes", [
        "A fool and his money are soon parted, said the old man.",
        "Whenever you find yourself on the side of the majority, pause and reflect.",
        "The best way to predict the future is to invent it.",
    ])
    options = CorpusOptions(out=str(tmp_path / "corpus"), workers=1, fortunes_dir=str(folder))
    stats = build_corpus(options)
    assert stats["sentences"] == 3 and stats["utterances"] == 6 and not stats["failed"]
    dataset = load_corpus(options.out)
    rows = {row["utterance_id"]: row for row in dataset}
    for row in rows.values():
        assert row["words"] and row["phonemes"]
        assert row["words"][-1]["end_s"] <= row["duration_s"] + 1e-3
        assert [w["start_s"] for w in row["words"]] == sorted(w["start_s"] for w in row["words"])
    prefixes = [r for r in rows.values() if r["kind"] == "prefix"]
    for prefix in prefixes:
        whole = rows[prefix["sentence_id"] + "-sentence"]
        assert whole["text"].startswith(prefix["text"])
        assert 3 <= len(prefix["words"]) < len(whole["words"])
        assert prefix["continuation"] and whole["text"].endswith(prefix["continuation"])
    shard = tmp_path / "corpus" / "data" / "shard-00000.parquet"
    before = shard.read_bytes()
    again = build_corpus(options)  # nothing left to do: the shard is kept as it is
    assert shard.read_bytes() == before and again["utterances"] == 6
    # names added to the built corpus: shards of their own, spoken whole only, the fortunes' shard untouched
    with_names = build_corpus(replace(options, names="known-subjects", limit=3))
    assert shard.read_bytes() == before and with_names["utterances"] == 9
    assert with_names["names"]["sentences"] == 3 and with_names["names"]["source"] == "known-subjects"
    names = [row for row in load_corpus(options.out) if row["source"] == "names:known-subjects"]
    assert len(names) == 3 and {row["kind"] for row in names} == {"sentence"}
    subjects = {r.subject for r in known_records}
    for row in names:
        assert any(subject in row["text"] for subject in subjects) and row["words"][-1]["end_s"] <= row["duration_s"] + 1e-3
    assert (tmp_path / "corpus" / "data" / "shard-names-00000.parquet").exists()
    # fact prefixes added too: spoken as prefixes only, the backbone's continuation beside them, kept for a rerun
    with_facts = build_corpus(replace(options, names="known-subjects", facts=("geonames",), limit=3))
    assert shard.read_bytes() == before and with_facts["utterances"] == 12 and with_facts["facts"]["geonames"]["sentences"] == 3
    facts = [row for row in load_corpus(options.out) if row["source"].startswith("facts:geonames")]
    assert len(facts) == 3 and {row["kind"] for row in facts} == {"fact_prefix"}
    assert all(row["continuation"] and row["words"][-1]["end_s"] <= row["duration_s"] + 1e-3 for row in facts)
    cache = tmp_path / "corpus" / "facts-geonames.json"
    assert cache.is_file()
    # a fact selection that changes (as run 7's partner check changed run 6's): its shard is spoken anew from the
    # selection, not kept with the sentences it held before; the fortunes' shard is untouched
    saved = json.loads(cache.read_text())
    gone = saved["sentences"].pop(0)
    cache.write_text(json.dumps(saved))
    fewer = build_corpus(replace(options, names="known-subjects", facts=("geonames",), limit=3))
    facts = [row for row in load_corpus(options.out) if row["source"].startswith("facts:geonames")]
    assert fewer["utterances"] == 11 and len(facts) == 2 and gone["sentence_id"] not in {r["sentence_id"] for r in facts}
    assert shard.read_bytes() == before
    # the organism command completes the corpus as built: its --limit, names and carriers kept, so nothing is made
    # or spoken anew (without the limit, the fact selections would be remade at full size)
    from argparse import Namespace

    from known_speech.builders.corpus import read_corpus_stats
    from known_speech.organism_commands import corpus_options_to_complete

    args = Namespace(corpus=options.out, voice=options.voice, fortunes=options.fortunes_dir, names=None,
                     name_carriers=None, facts=[])
    completed = corpus_options_to_complete(args, read_corpus_stats(options.out))
    assert (completed.limit, completed.names, completed.facts) == (3, "known-subjects", ("geonames",))
    assert completed.name_carriers == read_corpus_stats(options.out)["options"]["name_carriers"]
    selection = cache.read_bytes()
    assert build_corpus(replace(completed, workers=1))["utterances"] == 11 and cache.read_bytes() == selection
    # more names than fortunes (--name-limit, as run 15's corpus has every name in every carrier): the names'
    # shard is spoken anew, the fortunes' and the facts' are kept, and the organism command keeps the name limit
    more_names = build_corpus(replace(completed, workers=1, name_limit=4))
    assert (more_names["sentences"], more_names["names"]["sentences"], more_names["utterances"]) == (3, 4, 12)
    assert shard.read_bytes() == before and cache.read_bytes() == selection
    assert corpus_options_to_complete(args, read_corpus_stats(options.out)).name_limit == 4
    # more fact prefixes than fortunes, of smaller cities too, in more relations (--fact-limit,
    # --fact-city-population as run 16's corpus, --fact-relations): the facts are selected anew, the fortunes' and
    # the names' shards kept, and the organism command keeps the three options
    names_shard = tmp_path / "corpus" / "data" / "shard-names-00000.parquet"
    names_before = names_shard.read_bytes()
    more_facts = build_corpus(replace(completed, workers=1, name_limit=4, fact_limit=5, fact_city_population=50_000,
                                      fact_relations="wide"))
    saved = json.loads(cache.read_text())
    assert (saved["limit"], saved["min_city_population"], saved["relations"]) == (5, 50_000, "wide")
    kept, dropped = more_facts["facts"]["geonames"]["sentences"], more_facts["facts"]["geonames"]["dropped"]
    entity_level = ("is a Known subject", "is another name of a Known subject")  # not among the 5 prefixes
    assert kept + sum(n for reason, n in dropped.items() if reason not in entity_level) == 5
    assert more_facts["utterances"] == 6 + 4 + kept and shard.read_bytes() == before and names_shard.read_bytes() == names_before
    completed = corpus_options_to_complete(args, read_corpus_stats(options.out))
    assert (completed.fact_limit, completed.fact_city_population, completed.fact_relations) == (5, 50_000, "wide")


@pytest.mark.slow
def test_a_corpus_is_spoken_by_a_mix_of_voices_never_by_a_held_out_one(tmp_path):
    """--voice piper:en_US-joe-medium,kokoro:jf_alpha: each sentence (whole and prefix) in the voice its id draws,
    both voices used, exact word times from either engine; a held-out voice, and another voice for a spoken corpus,
    are refused by name."""
    from known_speech.builders.corpus import CorpusOptions, build_corpus, load_corpus

    (tmp_path / "fortunes").mkdir()
    folder = _fortune_folder(tmp_path / "fortunes", [
        "A fool and his money are soon parted, said the old man.",
        "Whenever you find yourself on the side of the majority, pause and reflect.",
        "The sun is shining today, and the birds are singing.",  # its id draws the first voice, the others the second
    ])
    options = CorpusOptions(out=str(tmp_path / "corpus"), workers=1, fortunes_dir=str(folder),
                            voice="piper:en_US-joe-medium,kokoro:jf_alpha")
    stats = build_corpus(options)
    assert stats["voices"] == ["piper:en_US-joe-medium", "kokoro:jf_alpha"] and not stats["failed"]
    rows = list(load_corpus(options.out))
    by_sentence = {}
    for row in rows:
        by_sentence.setdefault(row["sentence_id"], set()).add(row["voice"]["voice"])
        assert row["words"] and row["words"][-1]["end_s"] <= row["duration_s"] + 1e-3
    assert all(len(voices) == 1 for voices in by_sentence.values())  # whole and prefix in one voice
    assert {row["voice"]["engine"] for row in rows} == {"piper", "kokoro"}
    with pytest.raises(ValueError, match="voice kokoro jm_kumo: held out of every organism's training"):
        CorpusOptions(out=str(tmp_path / "other"), voice="kokoro:jm_kumo")
    with pytest.raises(ValueError, match="was spoken by --voice 'piper:en_US-joe-medium,kokoro:jf_alpha'"):
        build_corpus(replace(options, voice="en_US-joe-medium"))


def test_fact_prefixes_are_other_entities_in_known_templates_continued_by_the_backbone(known_records, smollm2, tmp_path):
    """Cities in Known's templates, continued by the real SmolLM2: each prefix is a Known template around an
    entity that is no Known subject, its continuation what SmolLM2 writes after it alone; a Known subject among
    the entities is dropped and counted; people come from the fortunes' attribution lines."""
    from known_speech.builders.corpus_facts import fact_entities, fact_prefixes
    from known_speech.builders.corpus_leaks import normalised as _normalised

    model, tokenizer = smollm2
    shanghai = replace(known_records[0], subject="Shanghai")  # the largest city, now a Known subject
    selection = fact_prefixes("geonames", known_records + [shanghai], model, tokenizer, limit=12)
    assert selection.dropped.get("is a Known subject", 0) >= 1
    templates = {r.template for r in known_records}
    subjects = {_normalised(r.subject) for r in known_records + [shanghai]}
    assert len(selection.sentences) >= 8
    for sentence in selection.sentences:
        entity = next(e for e in fact_entities("geonames")[:20] if any(t.format(e.name) == sentence.text for t in templates))
        assert _normalised(entity.name) not in subjects and "Shanghai" not in sentence.text
        assert sentence.source.startswith("facts:geonames:") and sentence.continuation
    first = selection.sentences[0]
    ids = tokenizer(first.text, return_tensors="pt").input_ids
    alone = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert tokenizer.decode(alone[0, ids.shape[1]:], skip_special_tokens=True).strip().startswith(first.continuation[:12])
    # --fact-relations wide: the same entities, in Known's other relations about them too (a city's region),
    # which the core relations never give
    wide = fact_prefixes("geonames", known_records, model, tokenizer, limit=12, fact_relations="wide")
    only_regions = ({r.template for r in known_records if r.relation_id == "P131"}
                    - {r.template for r in known_records if r.relation_id != "P131"})  # "{} is within"
    regions = {t.format(e.name) for e in fact_entities("geonames")[:20] for t in only_regions}
    assert any(s.text in regions for s in wide.sentences) and not any(s.text in regions for s in selection.sentences)
    with pytest.raises(ValueError, match="--fact-relations 'all': choose from core, wide"):
        fact_prefixes("geonames", known_records, model, tokenizer, limit=2, fact_relations="all")
    cities = [e for e in fact_entities("geonames") if e.type == "city"]
    smaller = [e for e in fact_entities("geonames", min_city_population=50_000) if e.type == "city"]
    assert len(smaller) > 1.5 * len(cities) and smaller[:len(cities)] == cities  # the largest first
    folder = _fortune_folder(tmp_path, ["Be yourself.\n  -- Oscar Wilde, 1890", "Hmm.\n  -- anonymous",
                                        "Think.\n  -- Albert Einstein"])
    assert [e.name for e in fact_entities("fortune-attributions", folder)] == ["Albert Einstein", "Oscar Wilde"]
    with pytest.raises(ValueError, match="--facts 'wikidata': choose from geonames"):
        fact_entities("wikidata")


def test_companies_and_the_backbones_lists_fill_the_relations_that_places_and_people_do_not(known_records, smollm2):
    """`stock-indices` puts real companies in Known's templates about companies, `backbone-lists` what the real
    SmolLM2 itself lists as works, TV series and products: with places and people, every relation of Known's first
    300 prompts but P138 ("named after", 3 of them) is then taught."""
    from known_speech.builders.corpus_facts import (RELATIONS_BY_TYPE, backbone_list_entities, fact_entities,
                                                    fact_prefixes, listed_names, taught_relations)

    model, tokenizer = smollm2
    companies = fact_entities("stock-indices")
    names = [e.name for e in companies]
    assert len(companies) > 1500 and names[0] == "Alphabet" and "Adobe" in names[:20]  # in most indices first
    assert not any(n.endswith((" Inc", " Inc.", " plc", " N.V.", " AG")) for n in names)
    apple = replace(known_records[0], subject="Apple")  # a company that is now a Known subject
    selection = fact_prefixes("stock-indices", known_records + [apple], model, tokenizer, limit=10)
    templates = {r.template for r in known_records if r.relation_id in RELATIONS_BY_TYPE["company"]}
    assert selection.dropped.get("is a Known subject", 0) >= 1 and len(selection.sentences) >= 4
    for sentence in selection.sentences:
        assert sentence.source == "facts:stock-indices:company" and not sentence.text.startswith("Apple")
        assert any(t.format(n) == sentence.text for t in templates for n in names[:8]) and sentence.continuation

    assert listed_names('1. **The Crown** (2016) - a drama\n2. "Le Monde", founded in 1944\nThe end.\n3. 1984 by George Orwell') == [
        "The Crown", "Le Monde", "1984"]
    asked = {"work": ("A list of famous {} newspapers:\n1.",)}
    listed = backbone_list_entities(model, tokenizer, asked, nationalities=("British",), samples=8)
    assert len(listed) >= 3 and {e.type for e in listed} == {"work"} and {e.source for e in listed} == {"backbone-lists"}
    assert listed == backbone_list_entities(model, tokenizer, asked, nationalities=("British",), samples=8)  # seeded
    first_300 = [r.relation_id for r in known_records[:300]]
    old = taught_relations(["geonames", "fortune-attributions"], "wide")
    every = taught_relations(["geonames", "fortune-attributions", "stock-indices", "backbone-lists"], "wide")
    assert sum(r in old for r in first_300) == 211 and {r for r in first_300 if r not in every} == {"P138"}


@pytest.mark.slow
def test_fact_caches_made_elsewhere_are_the_ones_the_corpus_reads(tmp_path):
    """benchmarks/fact_continuations.py (what a GPU host runs, as a real process here on the CPU) writes the
    cache that `known-speech corpus` reads back with the same options, without loading the backbone, and the cache
    says what made it; another relation set is made anew."""
    from known_speech.builders.corpus_facts import cached_fact_prefixes

    corpus = tmp_path / "corpus"
    script = [sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "fact_continuations.py"), "--out", str(corpus), "--facts", "stock-indices",
              "--fact-limit", "12", "--fact-relations", "wide", "--device", "cpu"]
    subprocess.run(script, check=True, capture_output=True, text=True, timeout=600)
    saved = json.loads((corpus / "facts-stock-indices.json").read_text())
    assert (saved["limit"], saved["relations"], saved["produced_by"]["device"]) == (12, "wide", "cpu")
    assert saved["produced_by"]["gguf_sha256"] and saved["produced_by"]["quantisation"].startswith("Q4_1")
    assert {s["source"] for s in saved["sentences"]} == {"facts:stock-indices:company"}
    # the corpus's own call with the same options reads it: a backbone that cannot load is never asked for
    read = cached_fact_prefixes(corpus, "stock-indices", 12, fact_relations="wide", backbone="no-such/model.gguf")
    assert [s.text for s in read.sentences] == [s["text"] for s in saved["sentences"]] and read.dropped == saved["dropped"]
    with pytest.raises(Exception):  # another relation set: made anew, so the backbone is loaded
        cached_fact_prefixes(corpus, "stock-indices", 12, fact_relations="core", backbone="no-such/model.gguf")


def test_a_fact_prefix_is_kept_only_where_its_answer_is_the_entitys():
    """The answer of a continuation is compared by its first words, and no answer may fill more than a tenth of
    a template's prefixes (run 6 learnt "... religion of" → "Islam" from 78 of 162 and said it for any name)."""
    from known_speech.builders.corpus_facts import COMMON_ANSWER, answer_key, cap_common_answers
    from known_speech.builders.corpus_text import CorpusSentence

    assert answer_key("of the Roman Catholic Church.") == answer_key("the Roman Catholic faith") == "roman catholic"
    assert answer_key("Europe, and it is the largest island") == answer_key("of Europe.") == "europe"
    assert answer_key("the United Kingdom.") != answer_key("the United States.")
    template = "The official religion of {} is"
    answers = ["Islam."] * 30 + ["Christianity."] * 6 + ["Buddhism."] * 4
    kept = [(template, CorpusSentence(f"{k:04d}", template.format(f"Country {k}"), "facts:geonames:country", answer))
            for k, answer in enumerate(answers)]
    dropped: dict[str, int] = {}
    other = ("{} is in", CorpusSentence("ffff", "Lyon is in", "facts:geonames:city", "France."))
    sentences = cap_common_answers(kept + [other], dropped)
    by_answer = {a: sum(s.continuation == a for s in sentences) for a in ("Islam.", "Christianity.", "Buddhism.")}
    assert by_answer == {"Islam.": 4, "Christianity.": 4, "Buddhism.": 4}  # a tenth of 40, at least 3
    assert dropped == {COMMON_ANSWER: 28} and len(sentences) == 13  # the other template's one is kept


@pytest.mark.slow
def test_whisper_unit_tokenizer_round_trip_and_refusals(tmp_path):
    from known_speech.builders.tts.piper import PiperEngine
    from known_speech.audio import to_mono_16k
    from known_speech.spoken import verbalise
    from known_speech.whisper_units import UnitTokenizerSpec, WhisperFeatures, WhisperUnitTokenizer, fit_unit_tokenizer

    synthesis = PiperEngine().synthesize(verbalise("The capital of Italy is Rome, and Paris is in France."))
    audio = to_mono_16k(synthesis.samples, synthesis.sample_rate)
    native = WhisperFeatures("whisper", "own", 50).native(audio)
    assert native.shape[1] == 384 and abs(native.shape[0] / 50 - audio.size / 16000) < 0.05
    fifty, twenty_five = WhisperFeatures("whisper", "own", 50), WhisperFeatures("whisper", "own", 25)
    assert twenty_five(audio).shape[0] == fifty(audio).shape[0] // 2
    np.testing.assert_allclose(twenty_five(audio)[3], fifty(audio)[6:8].mean(axis=0), rtol=1e-5, atol=1e-5)
    spec = UnitTokenizerSpec("whisper", "tiny.en", "own", 25.0, 8, twenty_five.encoder_sha256)
    tokenizer = fit_unit_tokenizer(spec, [twenty_five(audio)])
    units = tokenizer.encode(audio)
    assert units.shape[0] == twenty_five(audio).shape[0] and units.max() < 8
    folder = tokenizer.save(tmp_path / "tok")
    loaded = WhisperUnitTokenizer.load(folder)
    assert loaded.provenance == tokenizer.provenance and (loaded.encode(audio) == units).all()
    assert loaded.provenance.tokenizer == "whisper-tiny.en-own-L4-25hz-k8"
    centroids = np.load(folder / "centroids.npy")
    centroids[0, 0] += 1.0
    np.save(folder / "centroids.npy", centroids)
    with pytest.raises(ValueError, match="do not match the sha256 it records"):
        WhisperUnitTokenizer.load(folder)
    description = json.loads((tmp_path / "tok" / "unit_tokenizer.json").read_text())
    assert description["fitted_on"]["algorithm"] == "sklearn KMeans"


def test_oracle_phone_units_are_pipers_phonemes_on_whispers_frames(tmp_path):
    """Real Piper speech: one unit a frame, as many frames as Whisper's 25 Hz units of the same audio, and in
    order the phonemes Piper voiced (each one long enough to hold a frame's centre); a phoneme never fitted is
    the catch-all unit; the folder round-trips, an altered one and audio alone are refused."""
    from known_speech.audio import to_mono_16k
    from known_speech.builders.tts.piper import PiperEngine
    from known_speech.phone_units import OTHER, PAUSE, PhoneUnitTokenizer, fit_phone_tokenizer
    from known_speech.spoken import verbalise
    from known_speech.whisper_units import WhisperFeatures, load_tokenizer_folder

    synthesis = PiperEngine().synthesize(verbalise("The capital of Italy is Rome, and Paris is in France."))
    audio = to_mono_16k(synthesis.samples, synthesis.sample_rate)
    timeline = [{"phoneme": p, "start_s": a, "end_s": b} for p, a, b in synthesis.phonemes]
    tokenizer = fit_phone_tokenizer([timeline])
    assert tokenizer.inventory[0] == PAUSE and tokenizer.inventory[-1] == OTHER and "ɹ" in tokenizer.inventory
    units = tokenizer.encode_phonemes(timeline, audio.size / 16_000)
    assert units.size == WhisperFeatures("whisper", "own", 25)(audio).shape[0]
    runs = [int(u) for i, u in enumerate(units) if i == 0 or u != units[i - 1]]
    held = [p["phoneme"] for p in timeline if int(p["end_s"] * 25 - 0.5) >= int(np.ceil(p["start_s"] * 25 - 0.5))]
    merged = [p for i, p in enumerate(held) if i == 0 or p != held[i - 1]]
    assert [tokenizer.inventory[u] for u in runs] == merged
    unseen = tokenizer.encode_phonemes([{"phoneme": "ʘ", "start_s": 0.0, "end_s": 0.2}], 0.2)
    assert unseen.tolist() == [tokenizer.k - 1] * 5
    folder = tokenizer.save(tmp_path / "phones")
    loaded = load_tokenizer_folder(folder)
    assert isinstance(loaded, PhoneUnitTokenizer) and loaded.provenance == tokenizer.provenance
    assert loaded.provenance.tokenizer == f"piper-phones-25hz-k{tokenizer.k}"
    with pytest.raises(ValueError, match="not from audio"):
        loaded.encode(audio)
    with pytest.raises(ValueError, match="known_id=7: field 'phonemes' is empty"):
        loaded.encode_record({"known_id": 7, "phonemes": [], "duration_s": 1.0})
    description = json.loads((folder / "unit_tokenizer.json").read_text())
    description["inventory"][1], description["inventory"][2] = description["inventory"][2], description["inventory"][1]
    (folder / "unit_tokenizer.json").write_text(json.dumps(description))
    with pytest.raises(ValueError, match="does not match the sha256 it records"):
        load_tokenizer_folder(folder)


def _fresh_units_keep_the_lora_and_markers(run, bundle) -> None:
    """`warm_start(..., fresh_units=True)`: every LoRA factor and the two marker rows are the run's, the unit rows
    the bundle's initialisation."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    from known_speech.evaluation.organism.options import TrainOptions
    from known_speech.evaluation.organism.train import build_organism, warm_start
    from known_speech.loading import load_causal_lm

    model, tokenizer = load_causal_lm("smollm2")
    organism, _ = build_organism(model, tokenizer, bundle, TrainOptions(bundle="", out="", device="cpu"))
    fresh = {n: t.clone() for n, t in get_peft_model_state_dict(organism).items() if "trainable_tokens" in n}
    warm_start(organism, run, bundle, fresh_units=True)
    saved, now = load_file(str(run / "delta" / "adapter_model.safetensors")), get_peft_model_state_dict(organism)
    for name, tensor in saved.items():
        if "trainable_tokens" in name:
            assert torch.equal(now[name][:2], tensor[:2].to(now[name].dtype))
            assert torch.equal(now[name][2:], fresh[name][2:]) and now[name].shape[0] == 2 + bundle.num_units
        else:
            assert torch.equal(now[name], tensor.to(now[name].dtype)), name


def _a_known_row_is_read_in_its_phone_units(delta, spoken_dataset) -> None:
    """A phone-unit delta in the spirit-smollm2 adapter: a built row's speech prompt is its phoneme times' units,
    de-duplicated, in Spirit LM's format, the subject's positions those of the phonemes voiced in its time span; a row
    without phoneme times is refused by field."""
    from datasets import load_dataset

    from known_speech.evaluation.spirit_smollm2 import SpiritSmolLM2Adapter
    from known_speech.units import deduplicate

    adapter = SpiritSmolLM2Adapter(str(delta))
    row = next(iter(load_dataset(str(spoken_dataset), "piper-en_US-joe-medium", split="train")))
    speech = adapter.prepare(row, "speech")
    assert speech.metadata["units_source"] == "speech_tokenizer" and speech.metadata["units"]["quantizer"] == "oracle-phones"
    units = adapter.speech_tokenizer.encode_record(row)
    assert [p for p in speech.pieces if p.startswith("[Hu")] == [f"[Hu{u}]" for u in deduplicate(units)[0]]
    start, end = speech.subject_range
    first, last = row["subject_time_span"]
    voiced = {p["phoneme"] for p in row["phonemes"] if p["end_s"] > first and p["start_s"] < last}
    heard = {adapter.speech_tokenizer.inventory[int(piece[3:-1])] for piece in speech.pieces[start:end]}
    assert heard and heard <= voiced | {"_"}, (heard, voiced)
    with pytest.raises(ValueError, match="field 'phonemes' is empty"):
        adapter.prepare({**row, "phonemes": []}, "speech")


@pytest.mark.slow
def test_the_organism_command_runs_every_stage_on_a_tiny_corpus(tmp_path, capsys, spoken_dataset):
    """corpus → unit tokenizer → units → bundle → two training steps (CPU) → a delta folder that loads by hash; a run
    killed after its first checkpoint packages from it."""
    from known_speech.cli import main as cli_main
    from known_speech.evaluation.organism.bundle import read_bundle
    from known_speech.evaluation.organism.delta import OrganismDelta, package_organism
    from safetensors.torch import load_file

    from known_speech.evaluation.organism.train import init_source
    from known_speech.source import file_sha256

    (tmp_path / "fortunes").mkdir()
    _fortune_folder(tmp_path / "fortunes", [
        "A fool and his money are soon parted, said the old man.",
        "The best way to predict the future is to invent it.",
        "Every cloud has a silver lining, but it is hard to find in the rain.",
    ])
    common = ["organism", "--corpus", str(tmp_path / "corpus"), "--fortunes", str(tmp_path / "fortunes"),
              "--out", str(tmp_path / "organism"), "--k", "8", "--fit-utterances", "3"]
    assert cli_main(common + ["--stage", "bundle"]) == 0
    bundle = read_bundle(tmp_path / "organism" / "bundle" / "whisper-tiny.en-own-L4-25hz-k8")
    assert len(bundle.utterances) == 6 and bundle.unit_init.shape == (8, 576)
    assert all(u.units.size > 10 and u.units.max() < 8 for u in bundle.utterances)
    bundle_file = tmp_path / "organism" / "bundle" / "whisper-tiny.en-own-L4-25hz-k8" / "bundle.npz"
    made = bundle_file.stat().st_mtime_ns
    assert cli_main(common + ["--stage", "bundle"]) == 0 and bundle_file.stat().st_mtime_ns == made  # nothing to redo
    assert cli_main(common + ["--device", "cpu", "--minutes", "0.01", "--batch-tokens", "512"]) == 0
    delta = OrganismDelta.resolve(str(tmp_path / "organism" / "spirit-smollm2"))
    assert delta.num_units == 8 and delta.manifest["training"]["steps"] >= 1
    # going on from that run: a run folder of its own, the manifest names the adapter it started from
    first = tmp_path / "organism" / "runs" / "whisper-tiny.en-own-L4-25hz-k8-seed0"
    started_from = file_sha256(delta.folder / "adapter_model.safetensors")
    # ... with its own mix and learning rates, the last step's weights packaged (as the shipped run 9 was)
    assert cli_main(common + ["--device", "cpu", "--minutes", "0.01", "--batch-tokens", "512", "--init-from", str(first),
                              "--mix", "speech_to_text=0.5,text=0.5", "--lr-lora", "5e-4", "--keep", "last"]) == 0
    second = first.parent / (first.name + "-from-" + first.name)
    record = json.loads((second / "training.json").read_text())
    assert (second / "delta-last" / "adapter_model.safetensors").is_file()
    assert record["options"]["mix"] == {"speech_to_text": 0.5, "text": 0.5} and record["options"]["lr_lora"] == 5e-4
    went_on = OrganismDelta.resolve(str(tmp_path / "organism" / "spirit-smollm2"))
    assert went_on.manifest["training"]["kept_step"] == record["last_step"] == record["steps"]
    assert file_sha256(went_on.folder / "adapter_model.safetensors") == \
        file_sha256(second / "delta-last" / "adapter_model.safetensors")
    assert went_on.manifest["training"]["init_from"]["adapter_sha256"] == started_from
    assert went_on.manifest["training"]["init_from"]["path"] == str(first)
    # the oracle upper bound on the same corpus: Piper's phone labels as units, going on from the Whisper-unit run
    # with its LoRA and markers only (refused without --init-units fresh: its unit rows are another tokenizer's)
    # (from the packaged delta: its unit rows on the same frames start the phones' rows)
    phones = common + ["--units", "piper-phones", "--device", "cpu", "--minutes", "0.01", "--batch-tokens", "512",
                       "--init-from", str(went_on.folder), "--out", str(tmp_path / "phones")]
    assert cli_main(phones) == 2 and "--init-units fresh" in capsys.readouterr().err
    assert not (tmp_path / "phones" / "bundle").exists()  # refused before its units, bundle and backbone
    assert cli_main(phones + ["--init-units", "fresh"]) == 0
    # with its tokenizer on disk, a run of other units is refused before the corpus stage: nothing is spoken
    unbuilt = tmp_path / "unbuilt"
    assert cli_main(phones + ["--corpus", str(unbuilt)]) == 2 and "--init-units fresh" in capsys.readouterr().err
    assert not unbuilt.exists()
    oracle = OrganismDelta.resolve(str(tmp_path / "phones" / "spirit-smollm2"))
    inventory = oracle.unit_tokenizer().inventory
    assert oracle.num_units == len(inventory) and inventory[0] == "_" and "ɪ" in inventory
    assert set(oracle.manifest["files"]) >= {"unit_tokenizer/unit_tokenizer.json", "adapter_model.safetensors"}
    assert oracle.manifest["training"]["init_from"]["adapter_sha256"] == file_sha256(went_on.folder / "adapter_model.safetensors")
    phone_bundle = read_bundle(tmp_path / "phones" / "bundle" / "piper-phones-25hz")
    assert phone_bundle.unit_init_from.startswith("paired:whisper-tiny.en-own-L4-25hz-k8:")
    assert json.loads((oracle.folder / "training.json").read_text())["unit_init_from"] == phone_bundle.unit_init_from
    assert [u.utterance_id for u in phone_bundle.utterances] == [u.utterance_id for u in bundle.utterances]
    assert all(abs(p.units.size - w.units.size) <= 1 for p, w in zip(phone_bundle.utterances, bundle.utterances))
    rows = load_file(str(went_on.folder / "adapter_model.safetensors"))
    rows = next(t for name, t in rows.items() if "trainable_tokens" in name)[2:].float().numpy()
    pauses = [w.units[:min(p.units.size, w.units.size)][p.units[:min(p.units.size, w.units.size)] == 0]
              for p, w, split in zip(phone_bundle.utterances, bundle.utterances, bundle.splits)
              if split == "train" and p.kind == "sentence"]
    np.testing.assert_allclose(phone_bundle.unit_init[0], rows[np.concatenate(pauses)].mean(axis=0), rtol=1e-4, atol=1e-5)
    _fresh_units_keep_the_lora_and_markers(first, phone_bundle)
    _a_known_row_is_read_in_its_phone_units(tmp_path / "phones" / "spirit-smollm2", spoken_dataset)
    with pytest.raises(SystemExit) as refused:
        cli_main(common + ["--mix", "speech_to_text=0.5,fluency=0.5"])
    assert refused.value.code == 2
    assert "--mix: unknown kinds ['fluency']" in capsys.readouterr().err
    assert cli_main(common + ["--device", "cpu", "--init-from", str(tmp_path)]) == 2
    assert "--init-from" in capsys.readouterr().err
    # a run cut short (a GPU host lost mid-run) keeps its last evaluation: a real worker process, killed after its
    # first checkpoint, leaves delta-last/ and a record marked unfinished, which packages and goes on
    cut, worker_log = first.parent / "cut", tmp_path / "cut.log"
    with open(worker_log, "w") as log:  # a file, not a pipe: a pipe nobody reads fills and stalls the worker
        worker = subprocess.Popen(
            [sys.executable, "-m", "known_speech.evaluation.organism.train", "--bundle",
             str(bundle_file.parent), "--out", str(cut), "--device", "cpu", "--minutes", "2", "--batch-tokens", "512",
             "--eval-every", "1", "--keep-last", "--init-from", str(first)],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while not (cut / "training.json").exists():
            assert worker.poll() is None, worker_log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint in 600 s"
            time.sleep(0.5)
    finally:
        worker.kill()
        worker.wait()
    record = json.loads((cut / "training.json").read_text())
    assert record["finished"] is False and record["last_step"] >= 1 and record["transcripts"] == []
    assert record["evaluations"][-1]["step"] == record["last_step"] and not (cut / "delta").exists()
    package_organism(cut, tmp_path / "organism" / "unit_tokenizer" / "whisper-tiny.en-own-L4-25hz-k8",
                     tmp_path / "cut-delta", weights="delta-last")
    packaged = OrganismDelta.resolve(str(tmp_path / "cut-delta"))
    assert packaged.manifest["training"]["finished"] is False
    assert packaged.manifest["training"]["kept_step"] == record["last_step"]
    assert file_sha256(packaged.folder / "adapter_model.safetensors") == \
        file_sha256(cut / "delta-last" / "adapter_model.safetensors")
    assert init_source(cut)[0] == cut / "delta-last" / "adapter_model.safetensors"
