"""The records a run reads: the Known source for text, a built voice config for speech, and the subset
a model recalls (its recall filter)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from known_speech.layout import DatasetFolder

from .filtering import read_filter
from .model_input import Modality

__all__ = ["load_records", "recalled_records", "filter_rows", "own_source_sha256"]

logger = logging.getLogger(__name__)


def load_records(modality: Modality, dataset: str | Path, voice_config: str = "") -> list[dict]:
    """Text: the records of the source the dataset was built from (its source.json; the bundled Known for a folder
    built from it, or with nothing built); speech: the rows of the built voice config; both in known_id order."""
    if modality == "text":
        from known_speech.source import load_known

        source = DatasetFolder(dataset).source_records() if dataset else None
        records = [asdict(record) | {"subject_char_span": list(record.subject_char_span)}
                   for record in load_known(source)]
    else:
        import datasets

        from known_speech.progress import follow_terminal

        DatasetFolder(dataset).check_voice_config(voice_config)
        follow_terminal()
        records = list(datasets.load_dataset(str(dataset), voice_config, split="train"))
    return sorted(records, key=lambda record: int(record["known_id"]))


def own_source_sha256(dataset: str | Path | None) -> str | None:
    """The sha256 of the dataset's own source where it is not the bundled Known (None for the bundled one): what a
    filter made on it records, so that rows of one source are never read as prompts of another."""
    from known_speech.source import bundled_source_path, file_sha256

    source = DatasetFolder(dataset).source if dataset else None
    if source is None or not source.is_file():
        return None
    sha = file_sha256(source)
    return None if sha == file_sha256(bundled_source_path()) else sha


def filter_rows(dataset: str | Path, model: str, modality: Modality, voice_config: str = "") -> dict[int, dict] | None:
    """The model's recall-filter rows ({known_id: {"answer", "match", ...}}): the resumable rows of the
    work folder, else the published table (a dataset from the Hub); None where the model was not filtered."""
    folder = DatasetFolder(dataset)
    rows_file, table = folder.filter_file(model, modality, voice_config), folder.filter_table(model, modality, voice_config)
    made = rows_file if rows_file.exists() else table  # what is read below, and the settings it was made with
    if made.exists() and made.with_suffix(".json").exists():
        saved = json.loads(made.with_suffix(".json").read_text(encoding="utf-8"))
        if folder.stale_filter(saved):
            logger.warning("the recall filter of %s for %s in %s is stale: %s has been built again since, and its rows "
                           "are of the old items; run `known-speech filter` again", model, voice_config, dataset,
                           voice_config)
        then = saved.get("source_sha256")
        if then != own_source_sha256(dataset):
            raise ValueError(f"the recall filter of {model} for {modality} in {dataset} was made on another source "
                             f"than the dataset's ({(then or 'the bundled Known')[:12]}): run `known-speech filter` "
                             "again, or use the dataset it was made with")
    if rows_file.exists():
        return {known_id: asdict(row) for known_id, row in read_filter(rows_file).items()}
    if table.exists():
        import pyarrow.parquet as pq

        return {int(row["known_id"]): row for row in pq.read_table(table).to_pylist()}
    return None


def recalled_records(records: list[dict], dataset: str | Path, model: str, modality: Modality,
                     voice_config: str = "", subject_dependent: bool = False) -> list[dict]:
    """The records the model's recall filter found recalled (exact or partial); with `subject_dependent`, only
    those whose recall rests on the subject (evaluation.subject_dependence: the `_subject` views)."""
    rows = filter_rows(dataset, model, modality, voice_config)
    command = f"known-speech filter --model {model} --modality {modality}{' --config ' + voice_config if voice_config else ''}"
    if rows is None:
        raise ValueError(f"no recall filter of {model} for {modality} in {dataset}: run `{command}` first (or pass "
                         "--unfiltered)")
    recalled = {known_id for known_id, row in rows.items() if row["match"] != "none"}
    if subject_dependent:
        if recalled and all(rows[k].get("subject_dependent") is None for k in recalled):
            raise ValueError(f"the recall filter of {model} for {modality} in {dataset} has no probes (made with "
                             f"--no-probes, or by an older known-speech): run `{command}` again without --no-probes")
        recalled = {k for k in recalled if rows[k].get("subject_dependent")}
    return [record for record in records if int(record["known_id"]) in recalled]
