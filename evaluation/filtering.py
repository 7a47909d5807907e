"""Known-t2t / Known-s2t: which facts a model recalls, by greedy generation (`matching` classifies the
answers). The rows go, one JSON line each, into the dataset's work folder, so a stopped run resumes; a
filter records its settings and resumes only with them. `views` makes the published tables of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from known_speech.atomic import atomic_write_text
from known_speech.progress import bars_disabled, progress

from .adapter import Adapter
from .generation import MAX_BATCH, generation_batch_size
from .matching import classify_answer, first_answer
from .model_input import Modality, ModelInput
from .setting_differences import setting_differences

__all__ = ["FilterRow", "filter_settings", "run_filter", "read_filter", "prepared_batches", "generate_halving"]

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
    # `--subject-swap`, for a fact recalled from speech (evaluation.subject_swap): the generation with the subject's
    # units swapped for known_id `swapped_with`'s, and its match against this fact's attribute; -1 and "" where not run
    swapped_with: int = -1
    swapped_generation: str = ""
    swapped_match: str = ""
    # the probes of a recalled fact (evaluation.subject_dependence): the prompt with made-up names (their keys,
    # generations and matches against this fact's attribute) and with counterfactual subjects of the relation (their
    # known_ids, keys, generations and matches against each one's own attribute); both flags None where not probed
    probe_seed: int = -1
    blind_probe_ids: list[int] = field(default_factory=list)
    blind_generations: list[str] = field(default_factory=list)
    blind_matches: list[str] = field(default_factory=list)
    counterfactual_known_ids: list[int] = field(default_factory=list)
    counterfactual_probe_ids: list[int] = field(default_factory=list)
    counterfactual_generations: list[str] = field(default_factory=list)
    counterfactual_matches: list[str] = field(default_factory=list)
    subject_dependent: bool | None = None  # recalled, and from none of the made-up names
    follows_subject: bool | None = None  # subject-dependent, and names a counterfactual subject's own attribute


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


def filter_settings(adapter: Adapter, modality: Modality, voice_config: str, max_new_tokens: int,
                    source_sha256: str | None = None, build_items_sha256: str | None = None) -> dict:
    """What decides a filter row: the model, the generation settings, the banned tokens, and the dataset's own
    source where it is not the bundled Known."""
    banned = adapter.banned_token_ids(modality)
    return {"model": adapter.model_name, "adapter": adapter.name, "modality": modality, "voice_config": voice_config,
            "generation": "greedy", "max_new_tokens": max_new_tokens,
            "dtype": str(adapter.dtype).removeprefix("torch."), "banned_tokens": len(banned),
            "banned_tokens_sha256": hashlib.sha256(json.dumps(banned).encode()).hexdigest(),
            "adapter_options": adapter.options, "provenance": adapter.describe(),
            **({"model_generation": generation} if (generation := adapter.generation_settings()) else {}),
            **({"source_sha256": source_sha256} if source_sha256 else {}),
            **({"build_items_sha256": build_items_sha256} if build_items_sha256 else {})}


def _check_settings(path: Path, settings: dict) -> None:
    """A resumed filter must use the settings its rows were made with."""
    settings_path = path.with_suffix(".json")
    if settings_path.exists():
        saved = json.loads(settings_path.read_text(encoding="utf-8"))
        # rows made before the build's digest was recorded are not refused for lacking it
        unrecorded = () if "build_items_sha256" in saved else ("build_items_sha256",)
        differing = setting_differences(saved, settings, ignore=unrecorded)
        if differing and path.exists():
            raise ValueError(f"{path} was made with other settings ({differing}); delete it or use another --dataset")
    atomic_write_text(settings_path, json.dumps(settings, indent=2))


@dataclass
class _Batch:
    inputs: list[ModelInput]
    failed: dict[int, str]  # known_id -> why its input could not be made


def prepared_batches(adapter: Adapter, records: list[dict], modality: Modality, max_new_tokens: int,
                      batch_size: int | None) -> Iterator[_Batch]:
    """Inputs made a window at a time (not all held at once), generated in batches of similar length."""
    window = 4 * MAX_BATCH
    for start in range(0, len(records), window):
        inputs, failed = [], {}
        for record in records[start:start + window]:
            try:
                inputs.append(adapter.prepare(record, modality))
            except (ValueError, KeyError) as err:
                failed[int(record["known_id"])] = str(err)
        inputs.sort(key=lambda item: item.length)  # little padding in each batch
        if failed:
            yield _Batch([], failed)
        position = 0
        while position < len(inputs):
            longest = inputs[min(len(inputs), position + MAX_BATCH) - 1].length
            size = batch_size or generation_batch_size(adapter.model, adapter.device, longest, max_new_tokens)
            yield _Batch(inputs[position:position + size], {})
            position += size


def generate_halving(adapter: Adapter, inputs: list[ModelInput], max_new_tokens: int) -> list[str]:
    """A batch that runs out of device memory is generated again in halves."""
    try:
        return adapter.generate_batch(inputs, max_new_tokens)
    except torch.OutOfMemoryError:
        if len(inputs) == 1:
            raise
        torch.cuda.empty_cache()
        logger.info("a batch of %d ran out of memory: halving it", len(inputs))
        half = len(inputs) // 2
        return generate_halving(adapter, inputs[:half], max_new_tokens) + generate_halving(adapter, inputs[half:], max_new_tokens)


def run_filter(
    adapter: Adapter, records: list[dict], modality: Modality, path: Path, voice_config: str = "", max_new_tokens: int = 12,
    batch_size: int | None = None, subject_swap: bool = False, source_sha256: str | None = None,
    build_items_sha256: str | None = None,
) -> dict[int, FilterRow]:
    """Generate for every record not yet in `path` (append-only JSON lines, so a stopped run resumes), many
    prompts per forward (`batch_size`, or as many as fit the device's memory); with `subject_swap`, generate again
    every fact recalled from speech with another prompt's subject units (`_swap_subjects`)."""
    adapter.check_modality(modality)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_settings(path, filter_settings(adapter, modality, voice_config, max_new_tokens, source_sha256,
                                          build_items_sha256))
    done = read_filter(path)
    # rewrite what was read, dropping any torn last line, before appending more
    atomic_write_text(path, "".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in done.values()))
    todo = [record for record in records if int(record["known_id"]) not in done]
    by_id = {int(record["known_id"]): record for record in todo}
    with open(path, "a", encoding="utf-8") as handle, \
            progress(total=len(todo), desc=f"filter {adapter.model_name} ({modality})", unit="item", disable=bars_disabled()) as bar:

        def write(known_id: int, generation: str, error: str = "") -> None:
            row = FilterRow(
                known_id=known_id, model=adapter.model_name, adapter=adapter.name, modality=modality,
                voice_config=voice_config, generation=generation, answer=first_answer(generation),
                match=classify_answer(generation, by_id[known_id]["attribute"]) if not error else "none", error=error,
            )
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            done[known_id] = row

        for batch in prepared_batches(adapter, todo, modality, max_new_tokens, batch_size):
            for known_id, error in batch.failed.items():
                logger.warning("known_id=%d: %s", known_id, error)
                write(known_id, "", error)
            if batch.inputs:
                for model_input, generation in zip(batch.inputs, generate_halving(adapter, batch.inputs, max_new_tokens)):
                    write(model_input.known_id, generation)
            handle.flush()  # a batch's rows reach the file together: a stop loses at most the batch running
            bar.update(len(batch.inputs) + len(batch.failed))
    if subject_swap and modality == "speech":
        _swap_subjects(adapter, records, done, path, max_new_tokens)
    return done


def _swap_subjects(adapter: Adapter, records: list[dict], done: dict[int, FilterRow], path: Path,
                   max_new_tokens: int) -> None:
    """The subject swap for every recalled speech row without one, each appended as the row again with its
    swapped generation (the later line wins in `read_filter`, so a stopped run resumes)."""
    from .subject_swap import check_swappable, swapped_inputs

    check_swappable(type(adapter), "speech")
    by_id = {int(record["known_id"]): record for record in records}
    todo = [by_id[k] for k, row in done.items() if row.modality == "speech" and row.match != "none"
            and row.swapped_with < 0 and k in by_id]
    with open(path, "a", encoding="utf-8") as handle:
        for record, _, partner, swapped in progress(swapped_inputs(adapter, todo, records), total=len(todo),
                                                desc=f"subject swap {adapter.model_name}", unit="item",
                                                disable=bars_disabled()):
            if partner is None:
                continue
            known_id = int(record["known_id"])
            generation = generate_halving(adapter, [swapped], max_new_tokens)[0]
            row = replace(done[known_id], swapped_with=int(partner["known_id"]), swapped_generation=generation,
                          swapped_match=classify_answer(generation, record["attribute"]))
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            handle.flush()
            done[known_id] = row
