"""Publish a built dataset folder to the Hub as a versioned dataset: one commit, then a tag.

The files are the dataset's own, listed once (the card, build_stats.json, versions.json, each voice
config's parquet shards, the recall filters and their views, the card's images); that list is what
`--dry-run` prints and exactly what the commit sends, so nothing else in the folder (dot-files such as
.env, the item cache, a user's notes) is ever uploaded. The version entry (tag, date, voices, source
sha256, toolkit version) goes into versions.json and the card before the upload, and is rolled back if
the upload fails. The token comes from `huggingface_hub`'s usual places (HF_TOKEN, `hf auth login`) and
is never printed, logged or written.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from known_speech import __version__
from known_speech.atomic import atomic_write_text
from known_speech.layout import VERSIONS_FILE, DatasetFolder

from .writer import read_build_stats, read_versions, render_card

__all__ = ["PublishPlan", "plan_publish", "publish", "dataset_files"]

logger = logging.getLogger(__name__)

_TAG = re.compile(r"^v\d+\.\d+\.\d+([.-][0-9A-Za-z.]+)?$")


@dataclass
class PublishPlan:
    dataset_dir: Path
    repo_id: str
    tag: str
    private: bool
    files: list[tuple[str, int]] = field(default_factory=list)  # (path in repo, bytes)
    version: dict = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"repository: datasets/{self.repo_id} ({'private' if self.private else 'public'})",
                 f"tag: {self.tag}", f"version entry: {self.version}", f"files ({len(self.files)}):"]
        lines += [f"  {path}  ({f'{size:,} bytes' if size >= 0 else 'written at publish'})" for path, size in self.files]
        return "\n".join(lines)


def plan_publish(dataset_dir: str | Path, repo_id: str, tag: str, private: bool = False,
                 allow_failed: bool = False) -> PublishPlan:
    """What would be uploaded and tagged; refuses failed items (unless allowed) and reused tags."""
    dataset_dir = Path(dataset_dir)
    stats = read_build_stats(dataset_dir)
    if not stats:
        raise ValueError(f"{dataset_dir} holds no built voice (no build_stats.json): run `known-speech build` first")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ValueError(f"--repo {repo_id!r}: expected ORG/NAME")
    if not _TAG.match(tag):
        raise ValueError(f"--tag {tag!r}: expected a version tag such as v1.0.0")
    failed = {name: entry["failed"] for name, entry in stats.items() if entry.get("failed")}
    if failed and not allow_failed:
        listing = ", ".join(f"{name}: {count} failed item(s)" for name, count in failed.items())
        raise ValueError(f"refusing to publish a build with failed items ({listing}); rebuild with --retry-failed "
                         f"or pass --allow-failed")
    if any(entry["tag"] == tag for entry in read_versions(dataset_dir)):
        raise ValueError(f"tag {tag} was already published from {dataset_dir} (versions.json); choose a new tag")
    version = {
        "tag": tag,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "voices": sorted(stats),
        "source_sha256": next(iter(stats.values())).get("source_sha256", ""),
        "toolkit_version": __version__,
    }
    files = [(path.relative_to(dataset_dir).as_posix(), path.stat().st_size)
             for path in dataset_files(dataset_dir, sorted(stats))]
    if VERSIONS_FILE not in {name for name, _ in files}:
        files.append((VERSIONS_FILE, -1))
        files.sort()
    return PublishPlan(dataset_dir, repo_id, tag, private, files, version)


def dataset_files(dataset_dir: Path, voice_configs: list[str]) -> list[Path]:
    """The dataset's own files: nothing hidden (no path part starting with "."), nothing outside them."""
    folder = DatasetFolder(dataset_dir)
    candidates = [folder.card, folder.build_stats, folder.source, folder.versions]
    for voice_config in voice_configs:
        candidates += sorted(folder.config_dir(voice_config).glob("train-*.parquet"))
    for filter_dir in folder.filter_dirs():
        candidates += sorted(filter_dir.glob("*.parquet")) + sorted(filter_dir.glob("*.json"))
    candidates += folder.view_files() + sorted((folder.root / "images").glob("*.png"))
    return [path for path in candidates if path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(dataset_dir).parts)]


def publish(plan: PublishPlan, token: str | None = None, endpoint: str | None = None) -> str:
    """Upload exactly the plan's files in one commit and tag it; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    with DatasetFolder(plan.dataset_dir).writing(f"publish {plan.tag}"):
        return _upload(HfApi(token=token, endpoint=endpoint), plan, CommitOperationAdd)


def _upload(api, plan: PublishPlan, CommitOperationAdd) -> str:
    api.create_repo(plan.repo_id, repo_type="dataset", private=plan.private, exist_ok=True)
    tags = {ref.name for ref in api.list_repo_refs(plan.repo_id, repo_type="dataset").tags}
    if plan.tag in tags:
        raise ValueError(f"tag {plan.tag} already exists on datasets/{plan.repo_id}; choose a new tag")
    versions_path, card_path = plan.dataset_dir / VERSIONS_FILE, plan.dataset_dir / "README.md"
    previous = {path: path.read_text(encoding="utf-8") if path.exists() else None for path in (versions_path, card_path)}
    atomic_write_text(versions_path, json.dumps([plan.version, *read_versions(plan.dataset_dir)], indent=2))
    render_card(plan.dataset_dir, repo_id=plan.repo_id)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(plan.dataset_dir / path))
                  for path, _ in plan.files]
    try:
        commit = api.create_commit(plan.repo_id, operations, repo_type="dataset",
                                   commit_message=f"known-speech {plan.tag}")
        api.create_tag(plan.repo_id, tag=plan.tag, revision=commit.oid, repo_type="dataset",
                       tag_message=f"known-speech {plan.tag}: {', '.join(plan.version['voices'])}")
    except Exception:
        for path, text in previous.items():  # the version was not published: take its entry back out
            if text is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write_text(path, text)
        raise
    logger.info("published %s at %s", plan.tag, commit.commit_url)
    return commit.commit_url
