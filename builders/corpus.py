"""The speech corpus `spirit-smollm2` is trained on: Piper speech of fortune sentences with exact word and
phoneme times, as parquet shards that `load_dataset("parquet", data_dir=...)` reads (audio as an `Audio`
column).

Each sentence is spoken twice: whole, and its first words alone (a prefix of 3 to n-1 words, synthesised
as an utterance of its own, so that it ends as a Known prompt ends: with the voice's closing fall and
silence, not cut mid-flow). The prefix teaches speech-to-text continuation; the whole sentence
transcription, speech-only modelling and word-level interleaving. Both go through the dataset build's
own steps (spoken form, Piper, 16 kHz, peak levelling, 16-bit FLAC), so corpus audio and Known audio are
made alike.

The build is resumable: sentences are cut into fixed shards by their place in the selection, a shard is
written atomically when all its utterances are done, and a rerun makes only the missing shards. An
utterance that fails is recorded with its reason in the shard's statistics; the build goes on.
"""

from __future__ import annotations

import json
import logging
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np

from known_speech.atomic import atomic_path, atomic_write_text
from known_speech.audio import TARGET_SAMPLE_RATE, decode_audio, encode_flac, normalise_peak, to_mono_16k
from known_speech.progress import bars_disabled, progress
from known_speech.settings import DEFAULT_VOICE
from known_speech.spoken import verbalise

from .align.tts import words_from_synthesis
from .corpus_facts import DEFAULT_FACT_RELATIONS, FACT_RELATIONS, FACT_SOURCES, MIN_CITY_POPULATION, cached_fact_prefixes
from .corpus_text import (DEFAULT_NAME_CARRIERS, FORTUNES_DIR, FORTUNES_LICENCE, NAME_SOURCES, CorpusSentence,
                          check_name_carriers, held_out, name_sentences, read_fortunes,
                          select_sentences)

__all__ = ["CorpusOptions", "build_corpus", "corpus_voices", "corpus_features", "read_corpus_stats", "load_corpus", "SHARD_SENTENCES",
           "MIN_PREFIX_WORDS"]

logger = logging.getLogger(__name__)

SHARD_SENTENCES = 200
MIN_PREFIX_WORDS = 3
STATS_FILE = "corpus_stats.json"
SENTENCES_FILE = "sentences.jsonl"


def corpus_features() -> datasets.Features:
    word = {"word": datasets.Value("string"), "char_start": datasets.Value("int32"),
            "char_end": datasets.Value("int32"), "start_s": datasets.Value("float32"), "end_s": datasets.Value("float32")}
    return datasets.Features({
        "utterance_id": datasets.Value("string"),
        "sentence_id": datasets.Value("string"),
        "kind": datasets.Value("string"),  # "sentence" or "prefix"
        "split": datasets.Value("string"),  # "train" or "test", by the sentence's id (corpus_text.held_out)
        "text": datasets.Value("string"),  # what was spoken, as written
        "continuation": datasets.Value("string"),  # the rest of the sentence after a prefix ("" for a sentence)
        "spoken_text": datasets.Value("string"),  # what Piper read (known_speech.spoken)
        "source": datasets.Value("string"),
        "audio": datasets.Audio(sampling_rate=TARGET_SAMPLE_RATE),
        "duration_s": datasets.Value("float32"),
        "words": datasets.List(word),
        "phonemes": datasets.List({"phoneme": datasets.Value("string"), "start_s": datasets.Value("float32"),
                                   "end_s": datasets.Value("float32")}),
        "voice": {"engine": datasets.Value("string"), "voice": datasets.Value("string"),
                  "engine_version": datasets.Value("string")},
    })


@dataclass(frozen=True)
class CorpusOptions:
    out: str = "corpus"
    voice: str = DEFAULT_VOICE
    limit: int | None = None  # sentences (each gives a whole and a prefix utterance), and names sentences
    name_limit: int | None = None  # names sentences, where they differ from `limit` (None: `limit`)
    workers: int = 2
    fortunes_dir: str = str(FORTUNES_DIR)
    held_out_fraction: float = 0.02
    min_words: int = 5
    max_words: int = 25
    names: str | None = None  # a NAME_SOURCES key: names spoken alone and in carriers, shards "shard-names-*"
    name_carriers: int = DEFAULT_NAME_CARRIERS  # carrier sentences per name, besides the name alone
    facts: tuple[str, ...] = ()  # FACT_SOURCES keys: fact-shaped prefixes continued by the backbone, "shard-facts-*"
    fact_limit: int | None = None  # fact prefixes a source, where they differ from `limit` (None: `limit`)
    fact_city_population: int = MIN_CITY_POPULATION  # the smallest city of `geonames`
    fact_relations: str = DEFAULT_FACT_RELATIONS  # a FACT_RELATIONS key: the Known relations whose templates the entities fill

    def __post_init__(self) -> None:
        corpus_voices(self.voice)  # a malformed or held-out voice is refused before anything is spoken
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit {self.limit}: give at least 1 sentence")
        if self.name_limit is not None and self.name_limit < 1:
            raise ValueError(f"--name-limit {self.name_limit}: give at least 1 sentence")
        if self.fact_limit is not None and self.fact_limit < 1:
            raise ValueError(f"--fact-limit {self.fact_limit}: give at least 1 prefix")
        if self.fact_city_population < 1:
            raise ValueError(f"--fact-city-population {self.fact_city_population}: give at least 1 person")
        if self.fact_relations not in FACT_RELATIONS:
            raise ValueError(f"--fact-relations {self.fact_relations!r}: choose from {', '.join(FACT_RELATIONS)}")
        unknown = [source for source in self.facts if source not in FACT_SOURCES]
        if unknown:
            raise ValueError(f"--facts {unknown[0]!r}: choose from {', '.join(FACT_SOURCES)}")
        if self.workers < 1:
            raise ValueError(f"--workers {self.workers}: give at least 1")
        check_name_carriers(self.name_carriers)
        if not 0 <= self.held_out_fraction < 1:
            raise ValueError(f"held_out_fraction={self.held_out_fraction}: choose in [0, 1)")


def _prefix_length(sentence: CorpusSentence, num_words: int) -> int:
    """Words of the prefix: 3 to n-1, drawn from a generator seeded by the sentence (the same on every run)."""
    return random.Random(sentence.sentence_id).randint(MIN_PREFIX_WORDS, num_words - 1)


def corpus_voices(spec: str) -> list[tuple[str, str]]:
    """(engine, voice) of each voice of a `--voice` spec: comma-separated `engine:voice` (a bare name is a Piper
    voice), e.g. "piper:en_US-joe-medium,kokoro:jf_alpha"; the held-out voices are refused (no organism trains on
    them)."""
    from known_speech.settings import check_training_voice

    from .tts import ENGINES

    voices = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        engine, _, voice = part.partition(":") if ":" in part and part.split(":", 1)[0] in ENGINES else ("piper", "", part)
        check_training_voice(engine, voice)
        voices.append((engine, voice))
    if not voices:
        raise ValueError(f"--voice {spec!r}: give at least one voice, e.g. piper:en_US-joe-medium,kokoro:jf_alpha")
    return voices


class _Speaker:
    """One worker's voices, making the rows of one sentence in the voice its id draws (whole and prefix alike)."""

    def __init__(self, voice: str, held_out_fraction: float):
        from .tts import create_engine

        self.engines = [create_engine(engine, name) for engine, name in corpus_voices(voice)]
        self.held_out_fraction = held_out_fraction
        self.engine = self.engines[0]

    def utterance(self, sentence: CorpusSentence, kind: str, text: str, continuation: str) -> dict:
        spoken = verbalise(text)
        self.engine = self.engines[int(sentence.sentence_id[:8], 16) % len(self.engines)]
        synthesis = self.engine.synthesize(spoken)
        samples, _ = normalise_peak(to_mono_16k(synthesis.samples, synthesis.sample_rate))
        flac = encode_flac(samples)
        words = words_from_synthesis(spoken, synthesis)
        info = self.engine.info
        return {
            "utterance_id": f"{sentence.sentence_id}-{kind}", "sentence_id": sentence.sentence_id, "kind": kind,
            "split": "test" if held_out(sentence.sentence_id, self.held_out_fraction) else "train",
            "text": text, "continuation": continuation, "spoken_text": spoken.reading, "source": sentence.source,
            "audio": {"bytes": flac, "path": None}, "duration_s": decode_audio(flac)[0].size / TARGET_SAMPLE_RATE,
            "words": [{k: v for k, v in w.to_dict().items() if k != "score"} for w in words],
            "phonemes": [{"phoneme": p, "start_s": s, "end_s": e} for p, s, e in synthesis.phonemes or []],
            "voice": {"engine": info.engine, "voice": info.voice, "engine_version": info.engine_version},
        }

    def rows(self, sentence: CorpusSentence) -> list[dict]:
        if sentence.continuation:  # a fact prefix: spoken as it ends, its continuation written by the backbone
            return [self.utterance(sentence, "fact_prefix", sentence.text, sentence.continuation)]
        whole = self.utterance(sentence, "sentence", sentence.text, "")
        words = whole["words"]
        # a name is spoken whole only; "He's so ... so ..." has too few written words for a prefix and a rest
        if sentence.source.startswith("names:") or len(words) <= MIN_PREFIX_WORDS:
            return [whole]
        cut = _prefix_length(sentence, len(words))
        end = words[cut - 1]["char_end"]
        prefix = self.utterance(sentence, "prefix", sentence.text[:end].rstrip(",;:- "),
                                sentence.text[end:].strip())
        return [whole, prefix]


_speaker: _Speaker | None = None


def _init_worker(voice: str, held_out_fraction: float) -> None:
    global _speaker
    logging.basicConfig(level=logging.WARNING)
    _speaker = _Speaker(voice, held_out_fraction)


def _build_shard(task: tuple[Path, list[CorpusSentence]]) -> dict:
    """Speak a shard's sentences and write its parquet file; returns the shard's statistics."""
    target, sentences = task
    started, rows, failed = time.perf_counter(), [], []
    for sentence in sentences:
        try:
            rows.extend(_speaker.rows(sentence))
        except Exception as err:  # recorded with its reason; the shard goes on
            failed.append({"sentence_id": sentence.sentence_id, "text": sentence.text,
                           "reason": f"{type(err).__name__}: {err}"})
            logger.warning("sentence %s failed: %s", sentence.sentence_id, err)
    stats = {"shard": target.name, "utterances": len(rows), "failed": failed,
             "audio_s": float(sum(row["duration_s"] for row in rows)), "seconds": time.perf_counter() - started}
    if rows:
        with atomic_path(target) as temporary:
            datasets.Dataset.from_list(rows, features=corpus_features()).to_parquet(str(temporary))
    atomic_write_text(target.with_suffix(".json"), json.dumps(stats, indent=1))
    return stats


def _shard_sentence_ids(target: Path) -> set[str]:
    """The sentences a written shard holds: its rows' and its failed ones'."""
    import pyarrow.parquet as pq

    stats = json.loads(target.with_suffix(".json").read_text(encoding="utf-8"))
    ids = {f["sentence_id"] for f in stats["failed"]}
    if target.exists():
        ids |= set(pq.read_table(target, columns=["sentence_id"]).column("sentence_id").to_pylist())
    return ids


def _remove_stale_shards(shard_dir: Path, planned: dict[Path, list[CorpusSentence]]) -> None:
    """Remove the shards that the selection no longer holds, or holds with other sentences (a fact source
    whose prefixes changed), so that they are spoken anew and `load_corpus` reads only the selection."""
    stale = [p for p in shard_dir.glob("shard-*.json") if p.with_suffix(".parquet") not in planned
             or _shard_sentence_ids(p.with_suffix(".parquet")) != {s.sentence_id for s in planned[p.with_suffix(".parquet")]}]
    if stale:
        logger.warning("removing %d shards that the selection no longer holds as written (%s, ...)", len(stale),
                       stale[0].stem)
    for path in stale:
        path.with_suffix(".parquet").unlink(missing_ok=True)
        path.unlink()


def read_corpus_stats(out: str | Path) -> dict:
    path = Path(out) / STATS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def build_corpus(options: CorpusOptions) -> dict:
    """Select the sentences, speak every shard not yet written, and record what was built."""
    from tqdm import tqdm

    from known_speech.source import load_known

    out = Path(options.out)
    started = time.perf_counter()
    selection = select_sentences(read_fortunes(options.fortunes_dir), load_known(), options.min_words,
                                 options.max_words)
    sentences = selection.sentences[:options.limit] if options.limit else selection.sentences
    names = name_sentences(options.names, load_known(), options.name_carriers) if options.names else None
    name_limit = options.name_limit or options.limit
    if names and name_limit:
        names.sentences = names.sentences[:name_limit]
    out.mkdir(parents=True, exist_ok=True)
    spoken_by = read_corpus_stats(out).get("voice")
    if spoken_by and spoken_by != options.voice and any((out / "data").glob("shard-*.json")):
        raise ValueError(f"{out} was spoken by --voice {spoken_by!r}, not {options.voice!r}: give another --out")
    facts = {source: cached_fact_prefixes(out, source, options.fact_limit or options.limit, options.fact_city_population,
                                         options.fact_relations, options.fortunes_dir) for source in options.facts}
    fact_sentences = [s for selection in facts.values() for s in selection.sentences]
    atomic_write_text(out / SENTENCES_FILE, "".join(json.dumps(asdict(s)) + "\n" for s in
                                                    sentences + (names.sentences if names else []) + fact_sentences))
    shard_dir = out / "data"
    # names in shards of their own ("shard-names-*"), so that adding them to a corpus leaves its shards as built
    series = [("shard-", sentences)] + ([("shard-names-", names.sentences)] if names else [])
    series += [(f"shard-facts-{source}-", selection.sentences) for source, selection in facts.items()]
    planned = {shard_dir / f"{prefix}{index // SHARD_SENTENCES:05d}.parquet": part[index:index + SHARD_SENTENCES]
               for prefix, part in series for index in range(0, len(part), SHARD_SENTENCES)}
    _remove_stale_shards(shard_dir, planned)
    tasks = [(target, part) for target, part in planned.items() if not target.with_suffix(".json").exists()]
    logger.info("%d sentences%s, %d shards to speak", len(sentences),
                f" and {len(names.sentences)} of names" if names else "", len(tasks))
    shard_dir.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(options.workers, initializer=_init_worker,
                             initargs=(options.voice, options.held_out_fraction)) as pool:
        for _ in progress(pool.map(_build_shard, tasks), total=len(tasks), desc="speaking the corpus", unit="shard",
                      disable=bars_disabled()):
            pass
    shards = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(shard_dir.glob("shard-*.json"))]
    import importlib.metadata as metadata

    stats = {
        "sentences": len(sentences), "selection": selection.to_dict(), "licence": FORTUNES_LICENCE,
        **({"names": {"source": options.names, "about": NAME_SOURCES[options.names], **names.to_dict()}} if names else {}),
        **({"facts": {source: {"about": FACT_SOURCES[source], **selection.to_dict()} for source, selection in facts.items()}}
           if facts else {}),
        "voice": options.voice, "voices": [f"{engine}:{voice}" for engine, voice in corpus_voices(options.voice)],
        "piper_tts": metadata.version("piper-tts"),
        "utterances": sum(s["utterances"] for s in shards),
        "failed": [f for s in shards for f in s["failed"]],
        "audio_hours": sum(s["audio_s"] for s in shards) / 3600,
        "worker_seconds": sum(s["seconds"] for s in shards),
        "this_run_seconds": time.perf_counter() - started, "options": asdict(options),
    }
    atomic_write_text(out / STATS_FILE, json.dumps(stats, indent=1))
    return stats


def load_corpus(out: str | Path, split: str | None = None) -> datasets.Dataset:
    """The corpus as a `datasets.Dataset` (audio decoded on access), optionally one split."""
    files = sorted(str(p) for p in (Path(out) / "data").glob("shard-*.parquet"))
    if not files:
        raise ValueError(f"{out}: no corpus shards; build them with `known-speech corpus --out {out}`")
    dataset = datasets.load_dataset("parquet", data_files=files, split="train")
    return dataset.filter(lambda row: row == split, input_columns="split") if split else dataset


def waveform(row: dict) -> np.ndarray:
    """16 kHz float32 samples of a corpus row read with the audio column undecoded."""
    return decode_audio(row["audio"]["bytes"])[0]
