"""The records a run reads: the Known source for text, a built voice config for speech, and the subset
a model recalls (its recall filter)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from known_speech.layout import DatasetFolder

from .filtering import read_filter
from .model_input import Modality

__all__ = ["load_records", "recalled_records", "filter_rows"]


def load_records(modality: Modality, dataset: str | Path, voice_config: str = "") -> list[dict]:
    """Text: the Known source records; speech: the rows of the built voice config, in known_id order."""
    if modality == "text":
        from known_speech.source import load_known

        records = [asdict(record) | {"subject_char_span": list(record.subject_char_span)} for record in load_known()]
    else:
        import datasets

        from known_speech.progress import follow_terminal

        DatasetFolder(dataset).check_voice_config(voice_config)
        follow_terminal()
        records = list(datasets.load_dataset(str(dataset), voice_config, split="train"))
    return sorted(records, key=lambda record: int(record["known_id"]))


def filter_rows(dataset: str | Path, model: str, modality: Modality, voice_config: str = "") -> dict[int, dict] | None:
    """The model's recall-filter rows ({known_id: {"answer", "match", ...}}): the resumable rows of the
    work folder, else the published table (a dataset from the Hub); None where the model was not filtered."""
    folder = DatasetFolder(dataset)
    rows_file, table = folder.filter_file(model, modality, voice_config), folder.filter_table(model, modality, voice_config)
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
