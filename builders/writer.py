"""Lay out a Hub-style dataset repository: parquet shards per config, build stats, a dataset card."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from known_speech import __version__
from known_speech.atomic import atomic_path, atomic_write_text
from known_speech.schema import record_features
from known_speech.source import KNOWN_URL

__all__ = ["write_config", "render_card", "read_build_stats", "BUILD_STATS_FILE"]

logger = logging.getLogger(__name__)

BUILD_STATS_FILE = "build_stats.json"
MAX_SHARD_BYTES = 256 * 1024 * 1024


def read_build_stats(out_dir: str | Path) -> dict[str, dict]:
    path = Path(out_dir) / BUILD_STATS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_config(dataset: datasets.Dataset, out_dir: str | Path, config_name: str, stats: dict) -> list[Path]:
    """Write one config's train split as parquet shards and record its statistics; re-render the card."""
    config_dir = Path(out_dir) / config_name
    config_dir.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, math.ceil((dataset.data.nbytes or 1) / MAX_SHARD_BYTES))
    written: list[Path] = []
    for index in range(num_shards):
        target = config_dir / f"train-{index:05d}-of-{num_shards:05d}.parquet"
        with atomic_path(target) as temporary:
            dataset.shard(num_shards, index, contiguous=True).to_parquet(str(temporary))
        written.append(target)
    for stale in set(config_dir.glob("train-*.parquet")) - set(written):
        stale.unlink()
    all_stats = read_build_stats(out_dir)
    all_stats[config_name] = {
        **stats,
        "built_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "num_examples": len(dataset),
        "num_bytes": int(dataset.data.nbytes),
        "download_size": sum(path.stat().st_size for path in written),
    }
    atomic_write_text(Path(out_dir) / BUILD_STATS_FILE, json.dumps(all_stats, indent=2, ensure_ascii=False))
    render_card(out_dir)
    return written


def render_card(out_dir: str | Path, repo_id: str = "known-speech") -> DatasetCard:
    """README.md with the YAML `configs:` block listing every config built into `out_dir`."""
    stats = read_build_stats(out_dir)
    config_names = sorted(stats)
    card_data = DatasetCardData(
        language="en",
        license="mit",
        pretty_name="Known-Speech",
        task_categories=["automatic-speech-recognition", "text-generation"],
        size_categories="1K<n<10K",
        source_datasets=["known_1000 (ROME)"],
        configs=[
            {
                "config_name": name,
                "data_files": [{"split": "train", "path": f"{name}/train-*.parquet"}],
                **({"default": True} if index == 0 else {}),
            }
            for index, name in enumerate(config_names)
        ],
    )
    # The Hub's own `dataset_info` block. `datasets` also keys its local cache on it, so a rebuilt
    # folder with different data is not served from the cache of the previous build.
    features_yaml = datasets.DatasetInfo(features=record_features())._to_yaml_dict()["features"]
    card_data.dataset_info = [
        {
            "config_name": name,
            "features": features_yaml,
            "splits": [{"name": "train", "num_bytes": stats[name]["num_bytes"],
                        "num_examples": stats[name]["num_examples"]}],
            "download_size": stats[name]["download_size"],
            "dataset_size": stats[name]["num_bytes"],
        }
        for name in config_names
    ]
    template = files("known_speech.cards").joinpath("dataset_card.md").read_text(encoding="utf-8")
    voices = [{"config_name": name, **stats[name]} for name in config_names]
    card = DatasetCard.from_template(
        card_data,
        template_str=template,
        voices=voices,
        repo_id=repo_id,
        default_config=config_names[0] if config_names else "",
        toolkit_version=__version__,
        source_url=KNOWN_URL,
        source_sha256=voices[0].get("source_sha256", "") if voices else "",
    )
    atomic_write_text(Path(out_dir) / "README.md", str(card))
    return card
