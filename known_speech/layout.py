"""The dataset repository folder: where every file of a build, a recall filter and its views lives.

    <root>/README.md                           the dataset card (YAML configs block)
    <root>/build_stats.json                    per voice config: what built it and how it went
    <root>/source.json                         the Known-format records it was built from: its text prompts
    <root>/versions.json                       published versions (known-speech publish)
    <root>/<voice config>/train-*.parquet      one config per voice
    <root>/probes-<voice config>/train-*.parquet   prompts a recall filter asked beside the facts (made-up and
                                               counterfactual subjects), spoken in that voice
    <root>/filters/<model>/text.parquet        a model's recall filter, per modality and voice config, with
    <root>/filters/<model>/speech-<voice config>.parquet     its settings beside it (<name>.json)
    <root>/views/known_t2t-<model>.parquet     the recalled facts: Known-t2t, Known-s2t (with audio), and
    <root>/views/known_s2t-<model>.parquet     Known-both (recalled from text and from speech)
    <root>/views/known_both-<model>.parquet
    <root>/views/known_t2t_subject-<model>.parquet   the same views of the subject-dependent facts only
    <root>/.build/<voice config>/items/        the resumable item cache (not published)
    <root>/.build/filters/<model>/<name>.jsonl the resumable filter rows (not published)
    <root>/.lock, <root>/.writer.json          one writer at a time (build, filter, publish)
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["DatasetFolder", "model_slug", "selection_name", "probes_config", "VIEWS", "SUBJECT_VIEWS", "BUILD_STATS_FILE",
           "SOURCE_FILE", "VERSIONS_FILE", "CARD_FILE", "WORK_DIR"]

BUILD_STATS_FILE = "build_stats.json"
SOURCE_FILE = "source.json"
VERSIONS_FILE = "versions.json"
CARD_FILE = "README.md"
WORK_DIR = ".build"
LOCK_FILE, WRITER_FILE = ".lock", ".writer.json"
PAPER_VIEWS = ("known_t2t", "known_s2t", "known_both")  # the paper's: recalled (exact or partial)
SUBJECT_VIEWS = tuple(f"{view}_subject" for view in PAPER_VIEWS)  # recalled, and not from made-up names
VIEWS = PAPER_VIEWS + SUBJECT_VIEWS


def model_slug(model: str) -> str:
    """A file-system and config-name safe name: `HuggingFaceTB/SmolLM2` -> `HuggingFaceTB--SmolLM2`."""
    name = Path(model).name if Path(model).exists() else model
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-")


def selection_name(modality: str, voice_config: str = "") -> str:
    """`text`, or `speech-<voice config>`: the name of a modality's records, for filter files and trace runs."""
    return modality if modality == "text" else f"speech-{voice_config}"


def probes_config(voice_config: str) -> str:
    """The config of the probe prompts spoken in a voice: `probes-<voice config>`."""
    return f"probes-{voice_config}"


@dataclass(frozen=True)
class DatasetFolder:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def build_stats(self) -> Path:
        return self.root / BUILD_STATS_FILE

    @property
    def source(self) -> Path:
        return self.root / SOURCE_FILE

    def source_records(self) -> Path:
        """Where the folder's text prompts come from: the source it was built from, else the bundled Known."""
        from known_speech.source import bundled_source_path

        return self.source if self.source.is_file() else bundled_source_path()

    def items_sha256(self, voice_config: str) -> str | None:
        """The digest of a voice config's built items (build_stats.json), which a speech filter records."""
        return self._stats().get(voice_config, {}).get("items_sha256")

    def stale_filter(self, settings: dict) -> bool:
        """A speech filter (its settings) made on items that a later build of its voice config changed."""
        made_on, now = settings.get("build_items_sha256"), self.items_sha256(settings.get("voice_config", ""))
        return settings.get("modality") == "speech" and made_on is not None and now is not None and made_on != now

    @property
    def versions(self) -> Path:
        return self.root / VERSIONS_FILE

    @property
    def card(self) -> Path:
        return self.root / CARD_FILE

    @property
    def work_dir(self) -> Path:
        return self.root / WORK_DIR

    def _stats(self) -> dict[str, dict]:
        return json.loads(self.build_stats.read_text(encoding="utf-8")) if self.build_stats.exists() else {}

    def voice_configs(self) -> list[str]:
        """The voice configs built with rows (build_stats.json also keeps builds whose every item failed)."""
        return sorted(name for name, entry in self._stats().items()
                      if entry.get("num_examples") and not entry.get("probes_of"))

    def probe_configs(self) -> list[str]:
        """The configs of spoken probes (`probes-<voice config>`) with rows."""
        return sorted(name for name, entry in self._stats().items() if entry.get("num_examples") and entry.get("probes_of"))

    def check_voice_config(self, voice_config: str) -> None:
        """Refuse a voice config that is not built here, naming those that are and how to make one."""
        built = self.voice_configs()
        if voice_config in built:
            return
        given = f"--config {voice_config}: not a built voice config" if voice_config else "a voice config (--config) is needed"
        raise ValueError(f"{given}; voice configs of {self.root}: {', '.join(built) or 'none'} (`known-speech build "
                         f"--out {self.root}` makes one)")

    def config_dir(self, voice_config: str) -> Path:
        return self.root / voice_config

    def item_cache(self, voice_config: str) -> Path:
        return self.work_dir / voice_config / "items"

    def filter_dir(self, model: str) -> Path:
        return self.root / "filters" / model_slug(model)

    def filter_file(self, model: str, modality: str, voice_config: str = "") -> Path:
        """The resumable rows of a filter run (JSON lines, in the work folder)."""
        return self.work_dir / "filters" / model_slug(model) / f"{selection_name(modality, voice_config)}.jsonl"

    def filter_table(self, model: str, modality: str, voice_config: str = "") -> Path:
        """The published filter (parquet), made from the rows when a run ends."""
        return self.filter_dir(model) / f"{selection_name(modality, voice_config)}.parquet"

    def filter_dirs(self) -> list[Path]:
        return sorted(path for path in (self.root / "filters").glob("*/") if path.is_dir())

    def view_file(self, view: str, model: str) -> Path:
        return self.root / "views" / f"{view}-{model_slug(model)}.parquet"

    def model_configs(self, model: str) -> list[str]:
        """The config names a model's recall filter may give: `filter-<model>` and its views."""
        return [f"filter-{model_slug(model)}", *(self.view_file(view, model).stem for view in VIEWS)]

    def view_files(self) -> list[Path]:
        return sorted((self.root / "views").glob("*.parquet"))

    @contextmanager
    def writing(self, command: str) -> Iterator[None]:
        """Hold the folder's write lock (a file lock, so it dies with its process) for `command`; a second
        writer stops at once with a message naming the first, instead of interleaving with it."""
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        lock, writer = FileLock(self.root / LOCK_FILE), self.root / WRITER_FILE
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = json.loads(writer.read_text(encoding="utf-8")) if writer.exists() else {}
            raise ValueError(f"{self.root} is being written by another known-speech process ({holder.get('command', '?')}, "
                             f"pid {holder.get('pid', '?')}, since {holder.get('since', '?')}); wait for it to finish "
                             f"or use another folder") from None
        try:
            writer.write_text(json.dumps({"command": command, "pid": os.getpid(), "argv": sys.argv[1:],
                                          "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
            yield
        finally:
            writer.unlink(missing_ok=True)
            lock.release()
