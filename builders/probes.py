"""Other prompts spoken in a built voice: the probes that a recall filter asks beside Known's facts (a fact's prompt
with made-up names or other subjects in the subject's place), spoken whole by the same engine and voice, with the
same ASR check and alignment, as a config of their own, `probes-<voice config>`, that `load_dataset` loads.

Only the prompts asked are spoken (not six times the build), each once: its item is keyed by the probe's own id
and kept in the config's item cache, so later filters reuse it, and the config holds every probe spoken so far.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import datasets

from known_speech.layout import DatasetFolder, probes_config
from known_speech.source import KnownRecord

from .build import build_items, saved_options
from .builder import KnownSpeech
from .cache import ItemCache
from .writer import write_config

__all__ = ["speak_probes"]

logger = logging.getLogger(__name__)

_RECORD_FIELDS = ("known_id", "subject", "attribute", "template", "prompt", "relation_id")


def speak_probes(out_dir: str | Path, voice_config: str, records: list[dict], workers: int = 2) -> dict[int, dict]:
    """Speak `records` (Known-format dicts keyed by `known_id`) in `voice_config`'s voice into its probes config,
    skipping those already spoken, and return the config's rows of them by `known_id` (a record whose item failed
    is absent; the failure and its reason are in build_stats.json). The caller holds the folder's write lock."""
    folder = DatasetFolder(out_dir)
    options = replace(saved_options(folder, voice_config), workers=workers)
    name = probes_config(voice_config)
    cache = ItemCache(folder.item_cache(name))
    known = [KnownRecord(**{field: record[field] for field in _RECORD_FIELDS}) for record in records]
    summary = build_items(known, options, cache, config=name)
    if summary.failed:
        logger.warning("%s: %d of %d probes could not be spoken (first: known_id=%d, %s)", name, summary.failed,
                       summary.items, summary.failures[0].known_id, summary.failures[0].reason)
    spoken = sorted(int(path.stem) for path in cache.directory.glob("*.json")
                    if (outcome := cache.get(int(path.stem))) is not None and outcome.status == "ok")
    if spoken:
        builder = KnownSpeech(cache_dir=str(folder.work_dir / "datasets"), name=name, item_cache=str(cache.directory),
                              known_ids=tuple(spoken))
        builder.download_and_prepare(download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD,
                                     verification_mode=datasets.VerificationMode.NO_CHECKS)
        dataset = builder.as_dataset(split="train")
        write_config(dataset, folder.root, name, {**summary.to_dict(), "engine": options.engine,
                                                  "voice": Path(options.voice).name, "asr_model": options.asr_model,
                                                  "probes_of": voice_config})
    wanted = {int(record["known_id"]) for record in records}
    if not wanted & set(spoken):
        return {}
    rows = datasets.load_dataset(str(folder.root), name, split="train")
    rows = rows.filter(lambda known_id: known_id in wanted, input_columns="known_id")
    return {int(row["known_id"]): row for row in rows}
