"""Build one voice config end to end: every item into the cache, then the `datasets` builder over the
committed cache, then the repository writer. Resumable: committed items are reused as they are."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from known_speech.layout import DatasetFolder
from known_speech.source import KNOWN_URL, KnownRecord, bundled_source_path, file_sha256, load_known

from .builder import KnownSpeech
from .cache import ItemCache
from .options import BuildOptions
from .pool import build_outcomes
from .summary import BuildSummary, summarise
from .writer import write_config

__all__ = ["BuildResult", "BuildStats", "build_items", "build_dataset"]

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    summary: BuildSummary
    voice_config: str
    shards: list[Path]


@dataclass
class BuildStats:
    """A voice config's entry in build_stats.json: the summary and what produced the build."""

    summary: BuildSummary
    engine: str
    voice: str
    asr_model: str
    source: str
    source_url: str
    source_sha256: str
    limit: int | None

    def to_dict(self) -> dict:
        return {**self.summary.to_dict(), **{k: v for k, v in asdict(self).items() if k != "summary"}}


def build_items(records: list[KnownRecord], options: BuildOptions, cache: ItemCache) -> BuildSummary:
    """Build every record not yet in `cache` (failed ones again with `retry_failed`), then summarise."""
    started = time.perf_counter()
    outcomes = {record.known_id: cache.get(record.known_id) for record in records}
    pending = [record for record in records if outcomes[record.known_id] is None
               or (outcomes[record.known_id].status == "failed" and options.retry_failed)]
    progress = tqdm(total=len(pending), desc=f"building {options.voice_config}", unit="item")
    for outcome, audio in build_outcomes(pending, options):
        cache.put(outcome, audio)
        outcomes[outcome.known_id] = outcome
        progress.update(1)
    progress.close()
    summary = summarise(options.voice_config, records, outcomes, built=len(pending))
    summary.seconds = time.perf_counter() - started
    return summary


def build_dataset(out_dir: str | Path = "known-speech", **options: object) -> BuildResult:
    """Build (or resume) the voice config the `BuildOptions` describe into `out_dir`."""
    started = time.perf_counter()
    options = BuildOptions(**options)
    folder = DatasetFolder(out_dir)
    source = Path(options.source) if options.source else bundled_source_path()
    records = load_known(source)[: options.limit]
    cache = ItemCache(folder.item_cache(options.voice_config))
    summary = build_items(records, options, cache)
    builder = KnownSpeech(cache_dir=str(folder.work_dir / "datasets"), name=options.voice_config,
                          item_cache=str(cache.directory), known_ids=tuple(r.known_id for r in records))
    builder.download_and_prepare(download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD)
    dataset = builder.as_dataset(split="train")
    summary.seconds = time.perf_counter() - started
    stats = BuildStats(summary, options.engine, options.voice, options.asr_model, str(source), KNOWN_URL,
                       file_sha256(source), options.limit)
    shards = write_config(dataset, folder.root, options.voice_config, {**stats.to_dict(), "seconds": summary.seconds})
    logger.info("wrote %d shard(s) of %s to %s", len(shards), options.voice_config, folder.root)
    return BuildResult(summary, options.voice_config, shards)
