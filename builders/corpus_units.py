"""Units of every corpus utterance for one unit tokenizer: `units/<tokenizer>/shard-NNNNN.npz` beside the
corpus's shards (utterance ids, their units concatenated, where each starts and ends), one file per shard,
written atomically, so a stopped run resumes with the shards it has not done."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from known_speech.atomic import atomic_path
from known_speech.audio import decode_audio
from known_speech.corpus_spans import units_folder
from known_speech.progress import bars_disabled

__all__ = ["corpus_units", "fit_corpus_tokenizer", "fit_corpus_phone_tokenizer"]

logger = logging.getLogger(__name__)

_tokenizer = None


def _init_worker(tokenizer_dir: str) -> None:
    global _tokenizer
    from known_speech.whisper_units import load_tokenizer_folder

    logging.basicConfig(level=logging.WARNING)
    _tokenizer = load_tokenizer_folder(tokenizer_dir)


def _units_of_shard(task: tuple[Path, Path]) -> int:
    import pyarrow.parquet as pq

    shard, target = task
    oracle = hasattr(_tokenizer, "encode_phonemes")  # oracle phone units: from Piper's phoneme times, no audio
    table = pq.read_table(shard, columns=["utterance_id", *(("phonemes", "duration_s") if oracle else ("audio",))])
    ids, units = [], []
    for row in table.to_pylist():
        ids.append(row["utterance_id"])
        encoded = _tokenizer.encode_phonemes(row["phonemes"], row["duration_s"]) if oracle else \
            _tokenizer.encode(decode_audio(row["audio"]["bytes"])[0])
        units.append(encoded.astype(np.uint16))
    ends = np.cumsum([u.size for u in units])
    with atomic_path(target) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, utterance_ids=np.array(ids), units=np.concatenate(units), starts=ends - [u.size for u in units],
                     ends=ends)
    return len(ids)


def _units_current(shard: Path, units: Path) -> bool:
    """Units exist for the shard as it is now written (a re-spoken shard holds other utterances)."""
    import pyarrow.parquet as pq

    if not units.exists():
        return False
    written = pq.read_table(shard, columns=["utterance_id"]).column("utterance_id").to_pylist()
    return np.load(units)["utterance_ids"].tolist() == written


def corpus_units(corpus: str | Path, tokenizer_dir: str | Path, workers: int = 2) -> Path:
    """Units for every shard of the corpus that has none yet; returns their folder."""
    from tqdm import tqdm

    folder = units_folder(corpus, tokenizer_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [(shard, folder / shard.with_suffix(".npz").name)
             for shard in sorted((Path(corpus) / "data").glob("shard-*.parquet"))]
    for orphan in set(folder.glob("shard-*.npz")) - {units for _, units in tasks}:
        orphan.unlink()  # its shard was removed (corpus._remove_stale_shards)
    tasks = [task for task in tasks if not _units_current(*task)]
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(str(tokenizer_dir),)) as pool:
        for _ in tqdm(pool.map(_units_of_shard, tasks), total=len(tasks), desc="units", unit="shard",
                      disable=bars_disabled()):
            pass
    return folder


def _train_sentences(corpus: str | Path, columns: list[str], utterances: int) -> list[dict]:
    """The first `utterances` whole-sentence utterances of the corpus's train split (those columns)."""
    import pyarrow.parquet as pq

    used = []
    for shard in sorted((Path(corpus) / "data").glob("shard-*.parquet")):
        for row in pq.read_table(shard, columns=["utterance_id", "kind", "split", *columns]).to_pylist():
            if row["kind"] == "sentence" and row["split"] == "train":
                used.append(row)
        if len(used) >= utterances:
            break
    if not used:
        raise ValueError(f"{corpus}: no train utterances to fit units on; build the corpus first (known-speech corpus)")
    return used[:utterances]


def fit_corpus_phone_tokenizer(corpus: str | Path, out: str | Path, rate_hz: float = 25.0, utterances: int = 3000):
    """Oracle phone units (known_speech.phone_units) whose inventory is the phonemes Piper voiced in the first
    `utterances` train sentences of the corpus, saved to `out`."""
    from known_speech.phone_units import fit_phone_tokenizer

    used = _train_sentences(corpus, ["phonemes"], utterances)
    tokenizer = fit_phone_tokenizer([row["phonemes"] for row in used], rate_hz, {
        "corpus": str(Path(corpus).resolve()), "first": used[0]["utterance_id"]})
    return tokenizer.save(out)


def fit_corpus_tokenizer(corpus: str | Path, spec, out: str | Path, utterances: int = 3000, seed: int = 0):
    """Fit a Whisper k-means unit tokenizer on the first `utterances` whole-sentence utterances of the corpus's
    train split and save it to `out` (known_speech.whisper_units)."""
    from tqdm import tqdm

    from known_speech.whisper_units import WhisperFeatures, fit_unit_tokenizer

    features = WhisperFeatures(spec.source, spec.window, spec.rate_hz)
    used = _train_sentences(corpus, ["audio"], utterances)
    frames = [features(decode_audio(row["audio"]["bytes"])[0])
              for row in tqdm(used, desc="features", unit="utt", disable=bars_disabled())]
    from dataclasses import replace

    spec = replace(spec, encoder_sha256=features.encoder_sha256)
    tokenizer = fit_unit_tokenizer(spec, frames, seed=seed, fitted_on={
        "corpus": str(Path(corpus).resolve()), "utterances": len(used), "first": used[0]["utterance_id"]})
    return tokenizer.save(out)
