"""The records a run reads: the Known source for text, a built voice config for speech, and the subset
a model recalls (its recall filter)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from known_speech.layout import DatasetFolder

from .filtering import read_filter
from .model_input import Modality

__all__ = ["load_records", "recalled_records"]


def load_records(modality: Modality, dataset: str | Path, voice_config: str = "") -> list[dict]:
    """Text: the Known source records; speech: the rows of the built voice config, in known_id order."""
    if modality == "text":
        from known_speech.source import load_known

        records = [asdict(record) | {"subject_char_span": list(record.subject_char_span)} for record in load_known()]
    else:
        import datasets

        if not DatasetFolder(dataset).card.exists():
            raise ValueError(f"dataset {str(dataset)!r} has no built voice; run `known-speech build` first")
        records = list(datasets.load_dataset(str(dataset), voice_config, split="train"))
    return sorted(records, key=lambda record: int(record["known_id"]))


def recalled_records(records: list[dict], dataset: str | Path, model: str, modality: Modality,
                     voice_config: str = "") -> list[dict]:
    """The records the model's recall filter found recalled (exact or partial)."""
    folder = DatasetFolder(dataset)
    rows_file, table = folder.filter_file(model, modality, voice_config), folder.filter_table(model, modality, voice_config)
    if rows_file.exists():
        recalled = {known_id for known_id, row in read_filter(rows_file).items() if row.match != "none"}
    elif table.exists():  # a dataset from the Hub: the published filter
        import pyarrow.parquet as pq

        recalled = {int(row["known_id"]) for row in pq.read_table(table, columns=["known_id", "match"]).to_pylist()
                    if row["match"] != "none"}
    else:
        raise ValueError(
            f"no recall filter of {model} for {modality} in {dataset}: run `known-speech filter --model {model} "
            f"--modality {modality}{' --config ' + voice_config if voice_config else ''}` first (or pass --unfiltered)")
    return [record for record in records if int(record["known_id"]) in recalled]
