"""Lay out a Hub-style dataset repository: parquet shards per config, build stats, a dataset card."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path

import datasets
import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData

from known_speech import __version__
from known_speech.atomic import atomic_path, atomic_write_text
from known_speech.audio import PEAK_DBFS
from known_speech.layout import DatasetFolder
from known_speech.schema import record_features
from known_speech.source import KNOWN_URL

__all__ = ["write_config", "render_card", "read_build_stats", "read_versions"]

logger = logging.getLogger(__name__)

MAX_SHARD_BYTES = 256 * 1024 * 1024


def read_build_stats(out_dir: str | Path) -> dict[str, dict]:
    path = DatasetFolder(out_dir).build_stats
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def read_versions(out_dir: str | Path) -> list[dict]:
    """Published versions, newest first (written by `known-speech publish`)."""
    path = DatasetFolder(out_dir).versions
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def write_config(dataset: datasets.Dataset | None, out_dir: str | Path, voice_config: str, stats: dict) -> list[Path]:
    """Write one voice config's train split as parquet shards and record its statistics; re-render the card.
    With no dataset (every item failed) only the statistics are written, and the card lists no config."""
    folder = DatasetFolder(out_dir)
    config_dir = folder.config_dir(voice_config)
    config_dir.mkdir(parents=True, exist_ok=True)
    num_shards = 0 if dataset is None else max(1, math.ceil((dataset.data.nbytes or 1) / MAX_SHARD_BYTES))
    written: list[Path] = []
    for index in range(num_shards):
        target = config_dir / f"train-{index:05d}-of-{num_shards:05d}.parquet"
        with atomic_path(target) as temporary:
            dataset.shard(num_shards, index, contiguous=True).to_parquet(str(temporary))
        written.append(target)
    for stale in set(config_dir.glob("train-*.parquet")) - set(written):
        stale.unlink()
    all_stats = read_build_stats(out_dir)
    durations = np.array(dataset["duration_s"]) if dataset is not None else np.zeros(0)
    all_stats[voice_config] = {
        **stats,
        "relations": dict(sorted(Counter(dataset["relation_id"]).items())) if dataset is not None else {},
        "duration_s": {"min": float(durations.min()), "median": float(np.median(durations)),
                       "p95": float(np.percentile(durations, 95)), "max": float(durations.max())} if durations.size else {},
        "built_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "num_examples": len(dataset) if dataset is not None else 0,
        "num_bytes": int(dataset.data.nbytes) if dataset is not None else 0,
        "download_size": sum(path.stat().st_size for path in written),
    }
    atomic_write_text(folder.build_stats, json.dumps(all_stats, indent=2, ensure_ascii=False))
    if durations.size:
        _plot_durations(folder, voice_config, durations)
    render_card(out_dir)
    return written


def _size_category(rows: int) -> str:
    """The Hub's size bucket of the largest config."""
    return "n<1K" if rows < 1000 else "1K<n<10K" if rows < 10_000 else "10K<n<100K"


def _plot_durations(folder: DatasetFolder, voice_config: str, durations: np.ndarray) -> Path:
    """images/durations-<voice config>.png: how long the items are, for the card."""
    from known_speech.plotting import pyplot, save_figure

    figure, axis = pyplot().subplots(figsize=(5, 2.4), dpi=110)
    axis.hist(durations, bins=min(30, max(5, durations.size // 10)), color="#4878a8")
    axis.set_xlabel("duration (s)")
    axis.set_ylabel("items")
    axis.set_title(f"{voice_config}: {durations.size} items, median {np.median(durations):.2f} s", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, folder.root / "images" / f"durations-{voice_config}.png")


def _filter_configs(out_dir: Path) -> dict[str, dict]:
    """Recall filters (`filter-<model>`, every modality and voice) and their views (`known_t2t-<model>`, ...),
    each a parquet config whose features are read from its files."""
    import pyarrow.parquet as pq

    configs: dict[str, dict] = {}
    dataset = DatasetFolder(out_dir)
    for folder in dataset.filter_dirs():
        files = sorted(folder.glob("*.parquet"))
        if files:
            configs[f"filter-{folder.name}"] = {"path": f"filters/{folder.name}/*.parquet", "files": files}
    for view in dataset.view_files():
        configs[view.stem] = {"path": f"views/{view.name}", "files": [view]}
    for config in configs.values():
        config["num_examples"] = sum(pq.ParquetFile(f).metadata.num_rows for f in config["files"])
        config["num_bytes"] = sum(f.stat().st_size for f in config["files"])
        config["features"] = datasets.Features.from_arrow_schema(pq.read_schema(config["files"][0]))
    return configs


def _recall_figures(out_dir: Path) -> list[dict]:
    """Each filter's recall figures per split (`filters/<model>/<name>.recall.json`, written with its views by
    `known-speech filter`): recalled, subject-dependent, follows-subject and the relation prior, with 95 % intervals."""
    found, dataset = [], DatasetFolder(out_dir)
    for folder in dataset.filter_dirs():
        for path in sorted(folder.glob("*.recall.json")):
            settings = path.with_name(path.name.removesuffix(".recall.json") + ".json")
            stale = settings.exists() and dataset.stale_filter(json.loads(settings.read_text(encoding="utf-8")))
            found.append({"config_name": f"filter-{folder.name}", "stale": stale,
                          **json.loads(path.read_text(encoding="utf-8"))})
    return found


def render_card(out_dir: str | Path, repo_id: str = "known-speech", versions: list[dict] | None = None) -> DatasetCard:
    """README.md with the YAML `configs:` block listing every voice config and recall filter in `out_dir`."""
    out_dir = Path(out_dir)
    stats = read_build_stats(out_dir)
    config_names = DatasetFolder(out_dir).voice_configs()
    probe_names = DatasetFolder(out_dir).probe_configs()
    filter_configs = _filter_configs(out_dir)
    # the prompts are MIT; the audio follows each voice (its Hub licence id where its card states one)
    voice_ids = {entry.get("voice_licence", {}).get("hub_id") for entry in stats.values()}
    licences = sorted({"mit"} | {i for i in voice_ids if i}) + (["other"] if None in voice_ids else [])
    card_data = DatasetCardData(
        language="en",
        license=licences,
        pretty_name="Known-Speech",
        task_categories=["automatic-speech-recognition", "text-generation"],
        tags=["audio", "speech", "synthetic-speech", "factual-recall", "interpretability", "causal-tracing"],
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"],
        multilinguality="monolingual",
        size_categories=_size_category(max([entry["num_examples"] for entry in stats.values()], default=0)),
        source_datasets=["extended|other"],
        configs=[
            {
                "config_name": name,
                "data_files": [{"split": "train", "path": f"{name}/train-*.parquet"}],
                **({"default": True} if index == 0 else {}),
            }
            for index, name in enumerate(config_names)
        ] + [
            {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/train-*.parquet"}]}
            for name in probe_names
        ] + [
            {"config_name": name, "data_files": [{"split": "train", "path": config["path"]}]}
            for name, config in filter_configs.items()
        ],
    )
    # The Hub's own `dataset_info` block. `datasets` also keys its local cache on it, so a rebuilt
    # folder with different data is not served from the cache of the previous build.
    def info(name: str, features: datasets.Features, num_bytes: int, num_examples: int, download_size: int) -> dict:
        return {
            "config_name": name,
            "features": datasets.DatasetInfo(features=features)._to_yaml_dict()["features"],
            "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": num_examples}],
            "download_size": download_size,
            "dataset_size": num_bytes,
        }

    card_data.dataset_info = [
        info(name, record_features(), stats[name]["num_bytes"], stats[name]["num_examples"], stats[name]["download_size"])
        for name in config_names + probe_names
    ] + [
        info(name, config["features"], config["num_bytes"], config["num_examples"], config["num_bytes"])
        for name, config in filter_configs.items()
    ]
    template = files("known_speech.cards").joinpath("dataset_card.md").read_text(encoding="utf-8")
    # failed builds too, with why
    voices = [{"config_name": name, **stats[name]} for name in sorted(stats) if not stats[name].get("probes_of")]
    probes = [{"config_name": name, **stats[name]} for name in probe_names]
    card = DatasetCard.from_template(
        card_data,
        template_str=template,
        voices=voices,
        repo_id=repo_id,
        default_config=config_names[0] if config_names else "",
        toolkit_version=__version__,
        peak_dbfs=PEAK_DBFS,
        source_url=KNOWN_URL,
        source_sha256=voices[0].get("source_sha256", "") if voices else "",
        filters=[{"config_name": name, "num_examples": config["num_examples"]} for name, config in filter_configs.items()],
        probes=probes,
        recall=_recall_figures(out_dir),
        versions=versions if versions is not None else read_versions(out_dir),
    )
    atomic_write_text(DatasetFolder(out_dir).card, str(card))
    return card
