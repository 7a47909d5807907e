"""Known-t2t / Known-s2t: which facts a model recalls, by greedy generation, classified as the paper does.

"Rome" is exact; "Rome, Italy" and "the city of Rome" are partial (the attribute, as whole words, starts
within the answer's first four words); anything else is none. Results go into the dataset repository as the model's filter config, with
`known_t2t-<model>` / `known_s2t-<model>` views of the recalled facts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from known_speech.atomic import atomic_write_text

from .adapter import Adapter, Modality

__all__ = ["Match", "FilterRow", "filter_settings", "first_answer", "classify_answer", "run_filter", "model_slug", "filter_file", "read_filter",
           "write_views"]

logger = logging.getLogger(__name__)

Match = Literal["exact", "partial", "none"]
_ARTICLES = ("the ", "a ", "an ")
# a partial answer names the attribute near its start ("the city of Rome"), not somewhere in a long sentence
PARTIAL_WITHIN_WORDS = 3


@dataclass
class FilterRow:
    known_id: int
    model: str
    adapter: str
    modality: str
    voice: str  # the voice config for speech; "" for text
    generation: str
    answer: str  # the generation up to its first line or sentence end
    match: str
    error: str = ""  # why the item could not be run (then match is "none")


def model_slug(model: str) -> str:
    """A file-system and config-name safe name: `HuggingFaceTB/SmolLM2` -> `HuggingFaceTB--SmolLM2`."""
    name = Path(model).name if Path(model).exists() else model
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-")


def first_answer(generation: str) -> str:
    """The continuation up to its first newline or sentence end ("Rome. It is..." -> "Rome")."""
    text = generation.strip().split("\n", 1)[0]
    # a period ends the sentence after a word of 3+ letters or a number, not after "St." or "D.C."
    return re.split(r"(?:(?<=[A-Za-z]{3})|(?<=[0-9]))\.(?=\s|$)|[!?;]", text, maxsplit=1)[0].strip()


def _normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.sub(r"[^a-z0-9]+", " ", folded).strip()
    for article in _ARTICLES:
        words = words.removeprefix(article)
    return words


def classify_answer(generation: str, attribute: str) -> Match:
    answer, target = _normalise(first_answer(generation)), _normalise(attribute)
    if not target or not answer:
        return "none"
    if answer == target:
        return "exact"
    words, target_words = answer.split(), target.split()
    starts = [i for i in range(len(words) - len(target_words) + 1) if words[i:i + len(target_words)] == target_words]
    return "partial" if starts and starts[0] <= PARTIAL_WITHIN_WORDS else "none"


def filter_file(dataset_dir: str | Path, model: str, modality: Modality, voice: str = "") -> Path:
    name = modality if modality == "text" else f"speech-{voice}"
    return Path(dataset_dir) / "filters" / model_slug(model) / f"{name}.jsonl"


def read_filter(path: Path) -> dict[int, FilterRow]:
    """Rows written so far; a last line cut by an interruption is ignored (it is redone)."""
    rows: dict[int, FilterRow] = {}
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = FilterRow(**json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue
        rows[row.known_id] = row
    return rows


def filter_settings(adapter: Adapter, modality: Modality, voice: str, max_new_tokens: int) -> dict:
    """What decides a filter row: the model, the generation settings and the banned tokens."""
    banned = adapter.banned_token_ids(modality)
    return {"model": adapter.model_name, "adapter": adapter.name, "modality": modality, "voice": voice,
            "generation": "greedy", "max_new_tokens": max_new_tokens,
            "dtype": str(adapter.dtype).removeprefix("torch."), "banned_tokens": len(banned),
            "banned_tokens_sha256": hashlib.sha256(json.dumps(banned).encode()).hexdigest(),
            "adapter_options": adapter.options}


def _check_settings(path: Path, settings: dict) -> None:
    """A resumed filter must use the settings its rows were made with."""
    settings_path = path.with_suffix(".json")
    if settings_path.exists():
        saved = json.loads(settings_path.read_text(encoding="utf-8"))
        differing = sorted(key for key in settings.keys() | saved.keys() if saved.get(key) != settings.get(key))
        if differing and path.exists():
            raise ValueError(f"{path} was made with other settings ({', '.join(differing)}: "
                             f"{ {key: saved.get(key) for key in differing} }); delete it or use another --dataset")
    atomic_write_text(settings_path, json.dumps(settings, indent=2))


def run_filter(
    adapter: Adapter, records: list[dict], modality: Modality, path: Path, voice: str = "", max_new_tokens: int = 12,
) -> dict[int, FilterRow]:
    """Generate for every record not yet in `path` (append-only JSON lines, so a stopped run resumes)."""
    adapter.check_modality(modality)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_settings(path, filter_settings(adapter, modality, voice, max_new_tokens))
    done = read_filter(path)
    # rewrite what was read, dropping any torn last line, before appending more
    atomic_write_text(path, "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in done.values()))
    todo = [record for record in records if int(record["known_id"]) not in done]
    with open(path, "a", encoding="utf-8") as handle:
        for record in tqdm(todo, desc=f"filter {adapter.model_name} ({modality})", unit="item"):
            known_id = int(record["known_id"])
            generation, error = "", ""
            try:
                generation = adapter.generate(adapter.prepare(record, modality), max_new_tokens)
            except (ValueError, KeyError) as err:
                error = str(err)
                logger.warning("known_id=%d: %s", known_id, err)
            row = FilterRow(
                known_id=known_id, model=adapter.model_name, adapter=adapter.name, modality=modality, voice=voice,
                generation=generation, answer=first_answer(generation),
                match=classify_answer(generation, record["attribute"]) if not error else "none", error=error,
            )
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            handle.flush()
            done[known_id] = row
    return done


def write_views(dataset_dir: str | Path, model: str) -> list[Path]:
    """`views/known_t2t-<model>.jsonl` and `views/known_s2t-<model>.jsonl`: the recalled facts (exact or partial)."""
    folder = Path(dataset_dir) / "filters" / model_slug(model)
    views = {"known_t2t": sorted(folder.glob("text.jsonl")), "known_s2t": sorted(folder.glob("speech-*.jsonl"))}
    written = []
    for view, files in views.items():
        if not files:
            continue
        rows = [row for file in files for row in read_filter(file).values() if row.match != "none"]
        target = Path(dataset_dir) / "views" / f"{view}-{model_slug(model)}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in rows))
        written.append(target)
    return written
