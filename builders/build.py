"""Build one voice config end to end: every item into the cache, then the `datasets` builder over the
committed cache, then the repository writer. Resumable: committed items are reused as they are."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets

from known_speech.atomic import atomic_write_bytes, atomic_write_text
from known_speech.layout import DatasetFolder
from known_speech.progress import bars_disabled, progress
from known_speech.source import KNOWN_URL, KnownRecord, bundled_source_path, file_sha256, load_known

from .builder import KnownSpeech
from .cache import ItemCache
from .fingerprint import ItemInputs, changed_parts, item_fingerprint
from .options import BuildOptions
from .pool import build_outcomes
from .summary import BuildSummary, summarise
from .tts.licences import voice_licence
from .writer import read_build_stats, write_config

__all__ = ["BuildResult", "BuildStats", "build_items", "build_dataset", "save_options", "saved_options"]

OPTIONS_FILE = "options.json"

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
    voice_licence: dict  # builders.tts.licences.VoiceLicence

    def to_dict(self) -> dict:
        return {**self.summary.to_dict(), **{k: v for k, v in asdict(self).items() if k != "summary"}}


def build_items(records: list[KnownRecord], options: BuildOptions, cache: ItemCache, config: str = "") -> BuildSummary:
    """Build every record not yet in `cache`, or whose inputs changed since (failed ones again with
    `retry_failed`), then summarise (as `config`, by default the voice's); the summary counts why items were
    rebuilt."""
    config = config or options.voice_config
    started = time.perf_counter()
    inputs = ItemInputs.of(options)
    fingerprints = {record.known_id: item_fingerprint(record, inputs) for record in records}
    outcomes = {record.known_id: cache.get(record.known_id) for record in records}
    pending, rebuilt = [], Counter()
    for record in records:
        outcome = outcomes[record.known_id]
        if outcome is None:
            pending.append(record)
            continue
        changed = changed_parts(outcome.fingerprint, fingerprints[record.known_id])
        if changed or (outcome.status == "failed" and options.retry_failed):
            pending.append(record)
            rebuilt.update(changed or ["retry_failed"])
    bar = progress(total=len(pending), desc=f"building {config}", unit="item", disable=bars_disabled())
    for outcome, audio in build_outcomes(pending, options):
        outcome.fingerprint = fingerprints[outcome.known_id]
        cache.put(outcome, audio)
        outcomes[outcome.known_id] = outcome
        bar.update(1)
    bar.close()
    summary = summarise(config, records, outcomes, built=len(pending))
    summary.rebuilt = dict(rebuilt)
    summary.seconds = time.perf_counter() - started
    return summary


def save_options(folder: DatasetFolder, options: BuildOptions) -> None:
    """What the voice config is built with, in its work folder (not published: it may hold local paths), so that
    other prompts can be spoken later exactly as its items were (evaluation's probes)."""
    path = folder.work_dir / options.voice_config / OPTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({k: v for k, v in asdict(options).items() if k not in ("source", "limit", "prune")},
                                       indent=2))


def saved_options(folder: DatasetFolder, voice_config: str) -> BuildOptions:
    """The options a voice config was built with: saved by its build, else (a folder from the Hub) its engine, voice
    and ASR model from build_stats.json with the default aligners."""
    path = folder.work_dir / voice_config / OPTIONS_FILE
    if path.exists():
        return BuildOptions(**json.loads(path.read_text(encoding="utf-8")))
    folder.check_voice_config(voice_config)
    entry = json.loads(folder.build_stats.read_text(encoding="utf-8"))[voice_config]
    return BuildOptions(engine=entry["engine"], voice=entry["voice"], asr_model=entry["asr_model"])


def build_dataset(out_dir: str | Path = "known-speech", **options: object) -> BuildResult:
    """Build (or resume) the voice config the `BuildOptions` describe into `out_dir`."""
    started = time.perf_counter()
    options = BuildOptions(**options)
    folder = DatasetFolder(out_dir)
    source = Path(options.source) if options.source else bundled_source_path()
    records = load_known(source)[: options.limit]
    _check_source(folder, options, source)
    _check_shrink(folder, options, len(records))
    with folder.writing(f"build {options.voice_config}"):
        return _build(folder, options, source, records, started)


def items_sha256(cache: ItemCache, records: list[KnownRecord]) -> str:
    """What the config's rows are made of: each built item's fingerprint. A rebuild that changes no item keeps it, so
    a recall filter made on the rows is stale exactly when it changes."""
    built = [(record.known_id, outcome.fingerprint) for record in records
             if (outcome := cache.get(record.known_id)) is not None and outcome.status == "ok"]
    return hashlib.sha256(json.dumps(built, sort_keys=True).encode()).hexdigest()


def _check_source(folder: DatasetFolder, options: BuildOptions, source: Path) -> None:
    """One source per folder: another voice config built from another source would give one folder two sets of
    facts. Building the same voice config from an edited source is a rebuild (its changed items are made again)."""
    sha = file_sha256(source)
    others = sorted(name for name, entry in read_build_stats(folder.root).items()
                    if name != options.voice_config and entry.get("source_sha256") not in (None, sha))
    if others:
        raise ValueError(f"--source {source}: {folder.root} holds {', '.join(others)} built from another source "
                         f"(its {folder.source.name}); build this one into another --out")


def _keep_source(folder: DatasetFolder, source: Path) -> None:
    """A copy of the source beside the configs: text filters, traces and a Hub user read the same prompts."""
    data = source.read_bytes()
    if not folder.source.is_file() or folder.source.read_bytes() != data:
        atomic_write_bytes(folder.source, data)


def _check_shrink(folder: DatasetFolder, options: BuildOptions, selected: int) -> None:
    """A build of fewer records than the voice config holds would drop the others from it: refused unless
    `prune` (a smaller `--limit` by mistake would otherwise shrink a published folder without a word)."""
    if options.prune:
        return
    entry = read_build_stats(folder.root).get(options.voice_config)
    if entry and entry["items"] > selected:
        asked = f"--limit {options.limit}" if options.limit else f"a source of {selected} records"
        raise ValueError(f"{folder.root}: {options.voice_config} holds {entry['items']} items; {asked} would drop "
                         f"{entry['items'] - selected}: pass --prune, or --out for another folder")


def _build(folder: DatasetFolder, options: BuildOptions, source: Path, records: list[KnownRecord],
           started: float) -> BuildResult:
    cache = ItemCache(folder.item_cache(options.voice_config))
    save_options(folder, options)
    _keep_source(folder, source)
    summary = build_items(records, options, cache)
    dataset = None  # no item built: the statistics and the card still say why
    if summary.failed < summary.items:
        builder = KnownSpeech(cache_dir=str(folder.work_dir / "datasets"), name=options.voice_config,
                              item_cache=str(cache.directory), known_ids=tuple(r.known_id for r in records))
        # the split is whatever this build committed: the info cached by the last build (other item
        # counts after --retry-failed or a new --limit) is no expectation to verify against
        builder.download_and_prepare(download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD,
                                     verification_mode=datasets.VerificationMode.NO_CHECKS)
        dataset = builder.as_dataset(split="train")
    summary.seconds = time.perf_counter() - started
    # names, not local paths: build_stats.json is published
    voice = Path(options.voice).name if Path(options.voice).exists() else options.voice
    stats = BuildStats(summary, options.engine, voice, options.asr_model, source.name, KNOWN_URL, file_sha256(source),
                       options.limit, voice_licence(options.engine, options.voice).to_dict())
    shards = write_config(dataset, folder.root, options.voice_config, {**stats.to_dict(), "seconds": summary.seconds,
                                                                       "items_sha256": items_sha256(cache, records)})
    logger.info("wrote %d shard(s) of %s to %s", len(shards), options.voice_config, folder.root)
    return BuildResult(summary, options.voice_config, shards)
