"""A model's recall filters and the views made from them, as parquet configs of the dataset that
`load_dataset(folder, "known_t2t-<model>")` and the Hub viewer read.

    filter-<model>      every fact asked, per modality and voice config: the Known record and the answer
    known_t2t-<model>   the facts recalled from text
    known_s2t-<model>   the facts recalled from speech, with the voice config's audio, words and spans
    known_both-<model>  the facts recalled from both (per voice config), with both answers and the audio:
                        the prompts the paper's paired T→T vs S→T comparison runs on
    known_t2t_subject-<model>, known_s2t_subject-<model>, known_both_subject-<model>
                        the same, of the subject-dependent facts only (evaluation.subject_dependence)
A view with no row is not written (nor listed in the card): `load_dataset` cannot open an empty config.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from known_speech.atomic import atomic_path, atomic_write_text
from known_speech.layout import VIEWS, DatasetFolder, model_slug
from known_speech.progress import follow_terminal
from known_speech.schema import KNOWN_COLUMNS, both_view_features, filter_features, speech_view_features

from .filtering import FilterRow, read_filter
from .recall_summary import recall_figures
from .records import load_records
from .relation_prior import RelationPrior, relation_prior
from .subject_dependence import PROBES_SUFFIX

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


def _recalled(rows: dict[int, FilterRow], subject: bool) -> dict[int, FilterRow]:
    """The recalled facts; with `subject`, only the subject-dependent ones."""
    return {k: r for k, r in rows.items() if r.match != "none" and (r.subject_dependent or not subject)}


def _write_recall_figures(target: Path, rows: dict[int, FilterRow], prior: RelationPrior) -> Path:
    first = next(iter(rows.values()))
    figures = {"model": first.model, "adapter": first.adapter, "modality": first.modality,
               "voice_config": first.voice_config, "figures": [f.to_dict() for f in recall_figures(rows, prior)]}
    path = target.with_name(target.stem + ".recall.json")
    atomic_write_text(path, json.dumps(figures, indent=2))
    return path


def write_filter_views(dataset_dir: str | Path, model: str) -> list[Path]:
    """The model's filter tables, their recall figures (`<table>.recall.json`) and views, from the filter runs'
    rows; returns the files written."""
    import datasets

    follow_terminal()
    folder = DatasetFolder(dataset_dir)
    work = folder.filter_file(model, "text").parent
    written: list[Path] = []
    text_rows: dict[int, FilterRow] = {}
    text_records: dict[int, dict] = {}
    speech_rows: dict[str, dict[int, FilterRow]] = {}
    prior = relation_prior(load_records("text", dataset_dir))
    for rows_file in sorted(work.glob("*.jsonl")):
        rows = {} if rows_file.name.endswith(PROBES_SUFFIX) else read_filter(rows_file)
        if not rows:
            continue
        first = next(iter(rows.values()))
        records = {int(r["known_id"]): r for r in load_records(first.modality, dataset_dir, first.voice_config)}
        table = _table(_known_rows(rows, records))
        target = folder.filter_table(model, first.modality, first.voice_config)
        written.append(_to_parquet(table, target))
        written.append(_write_recall_figures(target, rows, prior))
        settings = rows_file.with_suffix(".json")
        if settings.exists():
            shutil.copyfile(settings, target.with_suffix(".json"))
        if first.modality == "text":
            text_rows, text_records = rows, records
        else:
            speech_rows[first.voice_config] = rows
    views: dict[str, list] = {view: [] for view in VIEWS}  # view -> its parts
    for suffix, subject in (("", False), ("_subject", True)):
        recalled_text = _recalled(text_rows, subject)
        if recalled_text:
            views[f"known_t2t{suffix}"].append(_table(_known_rows(recalled_text, text_records)))
        for voice_config, rows in speech_rows.items():
            recalled = {k: {name: value for name, value in vars(r).items() if name != "known_id"}
                        for k, r in _recalled(rows, subject).items()}
            if recalled:
                views[f"known_s2t{suffix}"].append(_voice_rows(folder.root, voice_config, recalled,
                                                                speech_view_features()))
            paired = {k: {"model": r.model, "adapter": r.adapter, "voice_config": voice_config,
                          **{f"{modality}_{name}": getattr(row, name) for modality, row in (("text", recalled_text[k]),
                                                                                           ("speech", r))
                             for name in ("generation", "answer", "match", "subject_dependent", "follows_subject")}}
                      for k, r in _recalled(rows, subject).items() if k in recalled_text}
            if paired:
                views[f"known_both{suffix}"].append(_voice_rows(folder.root, voice_config, paired, both_view_features()))
    for view, parts in views.items():
        path = folder.view_file(view, model)
        if parts:
            written.append(_to_parquet(datasets.concatenate_datasets(parts), path))
        else:  # no row: no config (`load_dataset` cannot open an empty parquet config), nor one left from before
            path.unlink(missing_ok=True)
            logger.info("%s-%s: no fact of these filters belongs in it; no view written", view, model_slug(model))
    return written
