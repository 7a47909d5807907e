"""Known-t2t / Known-s2t: which facts a model recalls, by greedy generation (`matching` classifies the
answers). The rows go, one JSON line each, into the dataset's work folder, so a stopped run resumes; a
filter records its settings and resumes only with them. `views` makes the published tables of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from known_speech.atomic import atomic_write_text

from .adapter import Adapter
from .matching import classify_answer, first_answer
from .model_input import Modality

__all__ = ["FilterRow", "filter_settings", "run_filter", "read_filter"]

logger = logging.getLogger(__name__)

@dataclass
class FilterRow:
    known_id: int
    model: str
    adapter: str
    modality: str
    voice_config: str  # for speech; "" for text
    generation: str
    answer: str  # the generation up to its first line or sentence end
    match: str
    error: str = ""  # why the item could not be run (then match is "none")


def read_filter(path: Path) -> dict[int, FilterRow]:
    """Rows written so far; a last line cut by an interruption is ignored (it is redone)."""
    rows: dict[int, FilterRow] = {}
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
            data.setdefault("voice_config", data.pop("voice", ""))  # rows written before the rename
            row = FilterRow(**data)
        except (json.JSONDecodeError, TypeError, AttributeError):
            continue
        rows[row.known_id] = row
    return rows


def filter_settings(adapter: Adapter, modality: Modality, voice_config: str, max_new_tokens: int) -> dict:
    """What decides a filter row: the model, the generation settings and the banned tokens."""
    banned = adapter.banned_token_ids(modality)
    return {"model": adapter.model_name, "adapter": adapter.name, "modality": modality, "voice_config": voice_config,
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
    adapter: Adapter, records: list[dict], modality: Modality, path: Path, voice_config: str = "", max_new_tokens: int = 12,
) -> dict[int, FilterRow]:
    """Generate for every record not yet in `path` (append-only JSON lines, so a stopped run resumes)."""
    adapter.check_modality(modality)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_settings(path, filter_settings(adapter, modality, voice_config, max_new_tokens))
    done = read_filter(path)
    # rewrite what was read, dropping any torn last line, before appending more
    atomic_write_text(path, "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in done.values()))
    todo = [record for record in records if int(record["known_id"]) not in done]
    with open(path, "a", encoding="utf-8") as handle:
        for record in tqdm(todo, desc=f"filter {adapter.model_name} ({modality})", unit="item", disable=None):
            known_id = int(record["known_id"])
            generation, error = "", ""
            try:
                generation = adapter.generate(adapter.prepare(record, modality), max_new_tokens)
            except (ValueError, KeyError) as err:
                error = str(err)
                logger.warning("known_id=%d: %s", known_id, err)
            row = FilterRow(
                known_id=known_id, model=adapter.model_name, adapter=adapter.name, modality=modality, voice_config=voice_config,
                generation=generation, answer=first_answer(generation),
                match=classify_answer(generation, record["attribute"]) if not error else "none", error=error,
            )
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            handle.flush()
            done[known_id] = row
    return done
