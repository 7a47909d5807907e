"""Build one voice config end to end: the datasets builder over the item cache, then the repo writer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import datasets

from known_speech.source import KNOWN_URL

from .builder import KnownSpeech
from .pipeline import BuildSummary
from .writer import write_config

__all__ = ["BuildResult", "build_dataset"]

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    summary: BuildSummary
    config_name: str
    shards: list[Path]


def build_dataset(out_dir: str | Path = "known-speech", **config: object) -> BuildResult:
    """Build (or resume) the config described by `config` (see `KnownSpeechConfig`) into `out_dir`."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    work_dir = out_dir / ".build"
    builder = KnownSpeech(cache_dir=str(work_dir / "datasets"), work_dir=str(work_dir), **config)
    builder.download_and_prepare(download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD)
    dataset = builder.as_dataset(split="train")
    summary = builder.summary
    if summary is None:
        raise RuntimeError("the builder produced no build summary")
    options = builder.config.options
    stats = {
        **summary.to_dict(),
        "engine": options.engine,
        "voice": options.voice,
        "engine_version": dataset[0]["voice"]["engine_version"] if len(dataset) else None,
        "asr_model": options.asr_model,
        "source": str(builder.source_path),
        "source_url": KNOWN_URL,
        "source_sha256": builder.source_sha256(),
        "limit": builder.config.limit,
    }
    summary.seconds = time.perf_counter() - started
    stats["seconds"] = summary.seconds
    shards = write_config(dataset, out_dir, builder.config.name, stats)
    logger.info("wrote %d shard(s) of %s to %s", len(shards), builder.config.name, out_dir)
    return BuildResult(summary, builder.config.name, shards)
