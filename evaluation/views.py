"""A model's recall filters and the views made from them, as parquet configs of the dataset that
`load_dataset(folder, "known_t2t-<model>")` and the Hub viewer read.

    filter-<model>      every fact asked, per modality and voice config: the Known record and the answer
    known_t2t-<model>   the facts recalled from text
    known_s2t-<model>   the facts recalled from speech, with the voice config's audio, words and spans
    known_both-<model>  the facts recalled from both (per voice config), with both answers and the audio:
                        the prompts the paper's paired T→T vs S→T comparison runs on
A view with no row is not written (nor listed in the card): `load_dataset` cannot open an empty config.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from known_speech.atomic import atomic_path
from known_speech.layout import DatasetFolder
from known_speech.progress import follow_terminal
from known_speech.schema import KNOWN_COLUMNS, both_view_features, filter_features, speech_view_features

from .filtering import FilterRow, read_filter
from .records import load_records

__all__ = ["write_filter_views"]

logger = logging.getLogger(__name__)


def _to_parquet(dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        dataset.to_parquet(str(temporary))
    return path


def _known_rows(rows: dict[int, FilterRow], records: dict[int, dict]) -> list[dict]:
    known = []
    for known_id, row in sorted(rows.items()):
        record = records.get(known_id, {})
        known.append({"known_id": known_id, **{name: record.get(name, "") for name in KNOWN_COLUMNS},
                      **{k: v for k, v in vars(row).items() if k != "known_id"}})
    return known


def _table(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_list(rows, features=filter_features())


def _voice_rows(dataset_dir: Path, voice_config: str, keep: dict[int, dict], features):
    """The voice config's rows of the facts in `keep`, with `keep[known_id]`'s columns added."""
    import datasets

    rows = datasets.load_dataset(str(dataset_dir), voice_config, split="train")
    rows = rows.filter(lambda known_id: known_id in keep, input_columns="known_id")
    extra = sorted(next(iter(keep.values()), {}))
    rows = rows.map(lambda known_id: keep[known_id], input_columns="known_id",
                    features=datasets.Features({**rows.features, **{name: features[name] for name in extra}}))
    return rows.cast(features)


def write_filter_views(dataset_dir: str | Path, model: str) -> list[Path]:
    """The model's filter tables and views, from the filter runs' rows; returns the files written."""
    import datasets

    follow_terminal()
    folder = DatasetFolder(dataset_dir)
    work = folder.filter_file(model, "text").parent
    written: list[Path] = []
    text_rows: dict[int, FilterRow] = {}
    text_records: dict[int, dict] = {}
    speech_rows: dict[str, dict[int, FilterRow]] = {}
    for rows_file in sorted(work.glob("*.jsonl")):
        rows = read_filter(rows_file)
        if not rows:
            continue
        first = next(iter(rows.values()))
        records = {int(r["known_id"]): r for r in load_records(first.modality, dataset_dir, first.voice_config)}
        table = _table(_known_rows(rows, records))
        target = folder.filter_table(model, first.modality, first.voice_config)
        written.append(_to_parquet(table, target))
        settings = rows_file.with_suffix(".json")
        if settings.exists():
            shutil.copyfile(settings, target.with_suffix(".json"))
        if first.modality == "text":
            text_rows, text_records = rows, records
        else:
            speech_rows[first.voice_config] = rows
    views: dict[str, list] = {"known_t2t": [], "known_s2t": [], "known_both": []}  # view -> its parts
    recalled_text = {k: r for k, r in text_rows.items() if r.match != "none"}
    if recalled_text:
        views["known_t2t"].append(_table(_known_rows(recalled_text, text_records)))
    for voice_config, rows in speech_rows.items():
        recalled = {k: {name: value for name, value in vars(r).items() if name != "known_id"}
                    for k, r in rows.items() if r.match != "none"}
        if recalled:
            views["known_s2t"].append(_voice_rows(folder.root, voice_config, recalled, speech_view_features()))
        paired = {k: {"model": r.model, "adapter": r.adapter, "voice_config": voice_config,
                      "text_generation": text_rows[k].generation,
                      "text_answer": text_rows[k].answer, "text_match": text_rows[k].match,
                      "speech_generation": r.generation, "speech_answer": r.answer, "speech_match": r.match}
                  for k, r in rows.items() if r.match != "none" and k in text_rows and text_rows[k].match != "none"}
        if paired:
            views["known_both"].append(_voice_rows(folder.root, voice_config, paired, both_view_features()))
    for view, parts in views.items():
        path = folder.view_file(view, model)
        if parts:
            written.append(_to_parquet(datasets.concatenate_datasets(parts), path))
        else:  # no row: no config (`load_dataset` cannot open an empty parquet config), nor one left from before
            path.unlink(missing_ok=True)
            logger.info("%s-%s: the model recalls none of these facts; no view written", view, model)
    return written
