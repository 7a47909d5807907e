"""What a `spirit-smollm2` training run reads: the corpus's text, word times and units, in two small files
that travel to a GPU host without the audio (`bundle.npz`: units and their offsets, the unit embeddings'
initialisation; `bundle.json.gz`: utterances, the unit tokenizer's provenance, the corpus's statistics).

The corpus (`known-speech corpus`) is read as parquet, its units from the unit tokenizer's folder beside it
(`units/<tokenizer>/shard-*.npz`, written by `known-speech corpus --unit-tokenizer`)."""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from known_speech.atomic import atomic_path, atomic_write_bytes
from known_speech.corpus_spans import fact_entity_span, name_span, units_folder

from known_speech.source import load_known

from .sequences import Utterance

__all__ = ["BUNDLE_VERSION", "Bundle", "write_bundle", "read_bundle", "make_bundle", "corpus_utterances", "unit_embedding_init",
           "paired_unit_init", "paired_init_label"]

logger = logging.getLogger(__name__)

# 2: name sentences carry their name's characters (the entity-state kind); 3: fact prefixes carry their entity's
# (its Known template taken off); a bundle of an older version is made again
BUNDLE_VERSION = 3
_COLUMNS = ["utterance_id", "sentence_id", "kind", "split", "text", "continuation", "words", "source"]


@dataclass
class Bundle:
    utterances: list[Utterance]
    splits: list[str]  # per utterance: "train" or "test"
    unit_tokenizer: dict  # the tokenizer's unit_tokenizer.json (provenance, rate, k)
    unit_init: np.ndarray  # (k, hidden) initial embeddings of the unit tokens
    corpus: dict  # the corpus's statistics
    version: int = 1  # BUNDLE_VERSION it was written at (1: before name spans, 2: before fact prefixes' entity spans)
    unit_init_from: str = "words"  # what the unit rows start from: "words", or `paired_init_label`'s

    @property
    def rate_hz(self) -> float:
        return float(self.unit_tokenizer["rate_hz"])

    @property
    def num_units(self) -> int:
        return int(self.unit_tokenizer["k"])

    def split(self, name: str) -> list[Utterance]:
        return [u for u, s in zip(self.utterances, self.splits) if s == name]


def _shard_units(unit_file: Path) -> dict[str, np.ndarray]:
    """One shard's units by utterance id, from its `units/<tokenizer>/shard-*.npz` (each array read once)."""
    with np.load(unit_file) as stored:
        ids, units, starts, ends = (stored[key] for key in ("utterance_ids", "units", "starts", "ends"))
    return {uid: units[start:end].astype(np.int64) for uid, start, end in zip(ids.tolist(), starts, ends)}


def stored_units(corpus: str | Path, tokenizer_dir: str | Path) -> dict[str, np.ndarray]:
    """Every utterance's units from the tokenizer's unit files alone: the shards' text and times are not read."""
    return {uid: units for unit_file in sorted(units_folder(corpus, tokenizer_dir).glob("shard-*.npz"))
            for uid, units in _shard_units(unit_file).items()}


def corpus_utterances(corpus: str | Path, tokenizer_dir: str | Path) -> tuple[list[Utterance], list[str]]:
    """The corpus's utterances with the units the tokenizer gave them (an utterance without units is
    left out and counted), a name sentence's name and a fact prefix's entity marked as `entity`."""
    import pyarrow.parquet as pq

    templates = sorted({record.template for record in load_known()})

    units_dir = units_folder(corpus, tokenizer_dir)
    utterances, splits, missing = [], [], 0
    for shard in sorted((Path(corpus) / "data").glob("shard-*.parquet")):
        unit_file = units_dir / shard.with_suffix(".npz").name
        if not unit_file.exists():
            raise ValueError(f"{unit_file}: no units for {shard.name}; run `known-speech corpus --out {corpus} "
                             f"--unit-tokenizer {tokenizer_dir}`")
        units = _shard_units(unit_file)
        for row in pq.read_table(shard, columns=_COLUMNS).to_pylist():
            if row["utterance_id"] not in units:
                missing += 1
                continue
            utterances.append(Utterance(
                row["utterance_id"], row["sentence_id"], row["kind"], row["text"], row["continuation"],
                units[row["utterance_id"]],
                [(w["char_start"], w["char_end"]) for w in row["words"]],
                [(w["start_s"], w["end_s"]) for w in row["words"]],
                _entity_span(row, templates)))
            splits.append(row["split"])
    if missing:
        logger.warning("%d utterances have no units and are left out", missing)
    return utterances, splits


def _entity_span(row: dict, templates: list[str]) -> tuple[int, int] | None:
    if row["source"].startswith("names:"):
        return name_span(row["text"])
    return fact_entity_span(row["text"], templates) if row["source"].startswith("facts:") else None


def unit_embedding_init(utterances: list[Utterance], num_units: int, rate_hz: float, tokenizer,
                        embeddings: np.ndarray) -> np.ndarray:
    """Each unit's initial embedding: the mean embedding of the text tokens of the words it sounds in (by
    Piper's word times), so that units start where the words they voice are; a unit never inside a word
    (silence) starts at the mean of all token embeddings."""
    sums = np.zeros((num_units, embeddings.shape[1]), dtype=np.float64)
    counts = np.zeros(num_units)
    for utterance in utterances:
        for (char_start, char_end), (start_s, end_s) in zip(utterance.word_spans, utterance.word_times):
            ids = tokenizer(" " + utterance.text[char_start:char_end], add_special_tokens=False).input_ids
            word = embeddings[ids].mean(axis=0)
            frames = utterance.units[int(np.floor(start_s * rate_hz)):int(np.ceil(end_s * rate_hz))]
            np.add.at(sums, frames, word)
            np.add.at(counts, frames, 1)
    init = _mean_where_seen(sums, counts, np.tile(embeddings.mean(axis=0), (num_units, 1)))
    logger.info("unit embeddings initialised from words for %d of %d units", int((counts > 0).sum()), num_units)
    return init


def _mean_where_seen(sums: np.ndarray, counts: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Per unit: the mean of what was summed for it, or its fallback row where it was never seen."""
    init = np.array(fallback, dtype=np.float64)
    seen = counts > 0
    init[seen] = sums[seen] / counts[seen, None]
    return init.astype(np.float32)


def paired_unit_init(utterances: list[Utterance], paired: list[np.ndarray], num_units: int,
                     paired_rows: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Each unit's initial embedding where a trained model's units of another tokenizer are known for the same
    frames (`paired[i]`: that tokenizer's units of `utterances[i]`, at the same rate): the mean of that model's rows
    of the units it co-occurs with, so that a new tokenizer starts where the model already hears the same sounds;
    a unit never seen keeps its `fallback` row (`unit_embedding_init`'s)."""
    sums = np.zeros((num_units, paired_rows.shape[1]), dtype=np.float64)
    counts = np.zeros(num_units)
    for utterance, other in zip(utterances, paired):
        frames = min(utterance.units.size, other.size)
        np.add.at(sums, utterance.units[:frames], paired_rows[other[:frames]])
        np.add.at(counts, utterance.units[:frames], 1)
    logger.info("unit embeddings initialised from another tokenizer's trained rows for %d of %d units",
                int((counts > 0).sum()), num_units)
    return _mean_where_seen(sums, counts, fallback)


def paired_init_label(paired: tuple[str | Path, np.ndarray] | None) -> str:
    """What a bundle's unit rows start from, to tell a bundle made for one `--init-from` from another's."""
    if paired is None:
        return "words"
    import hashlib

    rows = np.ascontiguousarray(paired[1], dtype=np.float32)
    return f"paired:{Path(paired[0]).name}:{hashlib.sha256(rows.tobytes()).hexdigest()[:16]}"


def write_bundle(out: str | Path, utterances: list[Utterance], splits: list[str], unit_tokenizer: dict,
                 unit_init: np.ndarray, corpus: dict, unit_init_from: str = "words") -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lengths = np.array([u.units.size for u in utterances])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    with atomic_path(out / "bundle.npz") as temporary:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, units=np.concatenate([u.units for u in utterances]).astype(np.uint16),
                                offsets=offsets, unit_init=unit_init)
    meta = {"version": BUNDLE_VERSION, "unit_tokenizer": unit_tokenizer, "corpus": corpus, "unit_init_from": unit_init_from,
            "utterances": [
        {"id": u.utterance_id, "sentence": u.sentence_id, "kind": u.kind, "split": s, "text": u.text,
         "continuation": u.continuation, "spans": u.word_spans, "times": [[round(a, 4), round(b, 4)] for a, b in u.word_times],
         **({"entity": list(u.entity)} if u.entity else {})}
        for u, s in zip(utterances, splits)]}
    atomic_write_bytes(out / "bundle.json.gz", gzip.compress(json.dumps(meta).encode("utf-8"), mtime=0))
    return out


def read_bundle(folder: str | Path) -> Bundle:
    folder = Path(folder)
    arrays = np.load(folder / "bundle.npz")
    meta = json.loads(gzip.decompress((folder / "bundle.json.gz").read_bytes()))
    units, offsets = arrays["units"].astype(np.int64), arrays["offsets"]
    utterances = [Utterance(m["id"], m["sentence"], m["kind"], m["text"], m["continuation"],
                            units[offsets[i]:offsets[i + 1]], [tuple(s) for s in m["spans"]],
                            [tuple(t) for t in m["times"]], tuple(m["entity"]) if "entity" in m else None)
                  for i, m in enumerate(meta["utterances"])]
    return Bundle(utterances, [m["split"] for m in meta["utterances"]], meta["unit_tokenizer"],
                  arrays["unit_init"], meta["corpus"], meta.get("version", 1), meta.get("unit_init_from", "words"))


def make_bundle(corpus: str | Path, tokenizer_dir: str | Path, out: str | Path,
                paired: tuple[str | Path, np.ndarray] | None = None) -> Bundle:
    """The bundle of a corpus and one of its unit tokenizers, the unit embeddings initialised on SmolLM2's; with
    `paired` (another tokenizer's folder, whose units of this corpus exist, and a trained model's rows of its units),
    from those rows on the same frames (`paired_unit_init`)."""
    from known_speech.loading import load_causal_lm

    tokenizer_dir = Path(tokenizer_dir)
    description = json.loads((tokenizer_dir / "unit_tokenizer.json").read_text(encoding="utf-8"))
    utterances, splits = corpus_utterances(corpus, tokenizer_dir)
    model, text_tokenizer = load_causal_lm("smollm2")
    embeddings = model.get_input_embeddings().weight.detach().float().numpy()
    train = [u for u, s in zip(utterances, splits) if s == "train" and u.kind == "sentence"]
    init = unit_embedding_init(train, int(description["k"]), float(description["rate_hz"]), text_tokenizer, embeddings)
    if paired is not None:
        other_dir, rows = paired
        others = stored_units(corpus, other_dir)
        train = [u for u in train if u.utterance_id in others]
        init = paired_unit_init(train, [others[u.utterance_id] for u in train], int(description["k"]), rows, init)
    stats_file = Path(corpus) / "corpus_stats.json"
    corpus_stats = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.exists() else {}
    corpus_stats.pop("failed", None)
    write_bundle(out, utterances, splits, description, init, corpus_stats, paired_init_label(paired))
    return read_bundle(out)
