"""Does a recall rest on the subject? Every recalled fact of a filter is asked again with its probes
(`subject_probes`: made-up names, counterfactual subjects), and its row gets two flags:

    subject_dependent   recalled, and recalled from none of the made-up names (not the template's answer)
    follows_subject     subject-dependent, and names a counterfactual subject's own attribute for at least one
                        of them (the answer moves with the subject)

A model that answers from the template alone has neither: its made-up names get the same answer, and it never
names another subject's attribute (the counterfactuals are drawn among the relation's other attributes).

Generations are cached per probe prompt, one JSON line each beside the filter's rows (`<rows>.probes.jsonl`,
with its settings in `<rows>.probes.json`), so a stopped run resumes and a blind prompt shared by many facts of
one template is generated once. The flags go into the filter's rows as a later line of the fact (the last line
wins in `read_filter`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from known_speech.atomic import atomic_write_text
from known_speech.progress import bars_disabled, progress
from known_speech.tracing.prompts import answer_token

from .adapter import Adapter
from .filtering import FilterRow, filter_settings, generate_halving, prepared_batches
from .matching import classify_answer
from .model_input import Modality, ModelInput
from .setting_differences import setting_differences
from .subject_probes import (BLIND_NAMES, DEFAULT_COUNTERFACTUALS, DEFAULT_PROBE_SEED, FactProbes, plan_probes,
                             unique_probes)

__all__ = ["PROBES_SUFFIX", "probes_file", "probe_settings", "to_probe", "probe_recalled", "apply_probes",
           "probe_filter", "Speaker", "AnswerShift", "answer_shifts"]

# speaks probe records (Known-format dicts) in the filter's voice and returns its rows of them by key
Speaker = Callable[[list[dict]], dict[int, dict]]

logger = logging.getLogger(__name__)


PROBES_SUFFIX = ".probes.jsonl"


def probes_file(rows_file: Path) -> Path:
    """The probes' generations beside a filter's rows: `<rows>.probes.jsonl`."""
    return rows_file.with_name(rows_file.stem + PROBES_SUFFIX)


def probe_settings(counterfactuals: int = DEFAULT_COUNTERFACTUALS, seed: int = DEFAULT_PROBE_SEED,
                   names: tuple[str, ...] = BLIND_NAMES) -> dict:
    return {"blind_names": list(names), "counterfactuals": counterfactuals, "seed": seed}


def to_probe(rows: dict[int, FilterRow], records: list[dict], pool: list[dict],
             counterfactuals: int = DEFAULT_COUNTERFACTUALS, seed: int = DEFAULT_PROBE_SEED,
             names: tuple[str, ...] = BLIND_NAMES) -> list[FactProbes]:
    """The probes of every recalled fact in `rows` not yet flagged (`records` give their prompts and spans;
    counterfactual subjects come from `pool`, the whole source)."""
    todo = {k for k, row in rows.items() if row.match != "none" and not row.error and row.subject_dependent is None}
    return plan_probes([r for r in records if int(r["known_id"]) in todo], pool, counterfactuals, seed, names)


def _read_generations(path: Path) -> dict[int, dict]:
    done: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                done[int(entry["probe_id"])] = entry
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut by an interruption: redone
    return done


def _check_probe_settings(path: Path, settings: dict) -> None:
    settings_path = path.with_suffix(".json")
    if settings_path.exists() and path.exists():
        differing = setting_differences(json.loads(settings_path.read_text(encoding="utf-8")), settings)
        if differing:
            raise ValueError(f"{path} was made with other settings ({differing}); delete it to probe anew")
    atomic_write_text(settings_path, json.dumps(settings, indent=2))


def probe_recalled(adapter: Adapter, plans: list[FactProbes], probe_records: dict[int, dict], modality: Modality,
                   rows_file: Path, voice_config: str = "", max_new_tokens: int = 12, batch_size: int | None = None,
                   counterfactuals: int = DEFAULT_COUNTERFACTUALS, seed: int = DEFAULT_PROBE_SEED,
                   names: tuple[str, ...] = BLIND_NAMES) -> dict[int, dict]:
    """Generate every probe prompt of `plans` not yet generated (`probe_records`: each probe's record by key, a
    Known-format dict for text or a row of the spoken probes' config for speech; a probe without one, such as an
    item whose synthesis failed, is recorded with its reason); returns the generations by probe key."""
    path = probes_file(rows_file)
    _check_probe_settings(path, {**filter_settings(adapter, modality, voice_config, max_new_tokens),
                                 "probes": probe_settings(counterfactuals, seed, names)})
    done = _read_generations(path)
    atomic_write_text(path, "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in done.values()))
    # a blind prompt has no attribute of its own; any answer serves to make its input (generation ignores it)
    asked: dict[int, dict] = {}
    for plan in plans:
        for probe in plan.prompts():
            if probe.probe_id not in done and probe.probe_id not in asked:
                record = probe_records.get(probe.probe_id)
                asked[probe.probe_id] = record and {**record, "attribute": record["attribute"] or plan.attribute}
    missing = [key for key, record in asked.items() if record is None]
    todo = [record for record in asked.values() if record is not None]
    with open(path, "a", encoding="utf-8") as handle, \
            progress(total=len(asked), desc=f"probes {adapter.model_name} ({modality})", unit="prompt",
                 disable=bars_disabled()) as bar:

        def write(key: int, generation: str, error: str = "") -> None:
            entry = {"probe_id": key, "generation": generation, "error": error}
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            done[key] = entry

        for key in missing:
            write(key, "", "no input: the probe was not built (see the probes config's build_stats.json)")
        bar.update(len(missing))
        for batch in prepared_batches(adapter, todo, modality, max_new_tokens, batch_size):
            for key, error in batch.failed.items():
                write(key, "", error)
            for model_input, generation in zip(batch.inputs, generate_halving(adapter, batch.inputs, max_new_tokens)
                                               if batch.inputs else []):
                write(model_input.known_id, generation)
            handle.flush()
            bar.update(len(batch.inputs) + len(batch.failed))
    return done


def apply_probes(rows: dict[int, FilterRow], plans: list[FactProbes], generations: dict[int, dict],
                 rows_file: Path) -> dict[int, FilterRow]:
    """Each probed fact's row with its probes' generations, matches and flags, appended to `rows_file`; a fact
    whose probe could not be generated keeps its flags None (logged with the reason)."""
    with open(rows_file, "a", encoding="utf-8") as handle:
        for plan in plans:
            blind = [generations[p.probe_id] for p in plan.blind]
            counterfactual = [generations[p.probe_id] for p in plan.counterfactual]
            failed = [entry["error"] for entry in blind + counterfactual if entry["error"]]
            blind_matches = [classify_answer(e["generation"], plan.attribute) for e in blind]
            own_matches = [classify_answer(e["generation"], p.attribute) for e, p in zip(counterfactual, plan.counterfactual)]
            dependent = None if failed else all(m == "none" for m in blind_matches)
            if failed:
                logger.warning("known_id=%d: not flagged, a probe failed: %s", plan.known_id, failed[0])
            row = replace(rows[plan.known_id], probe_seed=plan.seed,
                          blind_probe_ids=[p.probe_id for p in plan.blind],
                          blind_generations=[e["generation"] for e in blind], blind_matches=blind_matches,
                          counterfactual_known_ids=[p.source_known_id for p in plan.counterfactual],
                          counterfactual_probe_ids=[p.probe_id for p in plan.counterfactual],
                          counterfactual_generations=[e["generation"] for e in counterfactual],
                          counterfactual_matches=own_matches, subject_dependent=dependent,
                          follows_subject=None if failed else dependent and any(m != "none" for m in own_matches))
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            rows[plan.known_id] = row
    return rows


def probe_filter(adapter: Adapter, rows: dict[int, FilterRow], records: list[dict], pool: list[dict],
                 modality: Modality, rows_file: Path, speak: Speaker | None = None, voice_config: str = "",
                 max_new_tokens: int = 12, batch_size: int | None = None,
                 counterfactuals: int = DEFAULT_COUNTERFACTUALS, seed: int = DEFAULT_PROBE_SEED) -> dict[int, FilterRow]:
    """Every recalled fact of a filter's `rows` not yet flagged, probed and flagged: its probes planned, spoken by
    `speak` for speech (builders.probes.speak_probes in the filter's voice), generated and matched."""
    plans = to_probe(rows, records, pool, counterfactuals, seed)
    if not plans:
        return rows
    probe_records = unique_probes(plans)
    if modality == "speech":
        if speak is None:
            raise ValueError("probing speech needs the probes spoken: pass speak (builders.probes.speak_probes)")
        probe_records = speak(list(probe_records.values()))
    generations = probe_recalled(adapter, plans, probe_records, modality, rows_file, voice_config, max_new_tokens,
                                 batch_size, counterfactuals, seed)
    return apply_probes(rows, plans, generations, rows_file)


@dataclass(frozen=True)
class AnswerShift:
    """How far one counterfactual subject moves the model's answer, in log P of each attribute's first token at the
    prompt's end: toward the counterfactual's own attribute, and away from the fact's. A model that reads the
    subject moves both ways; one that answers from the template alone moves neither (both near 0)."""

    known_id: int
    counterfactual_known_id: int
    toward_counterfactual: float  # log P(its attribute | its prompt) − log P(its attribute | the fact's prompt)
    toward_fact: float  # log P(the fact's attribute | the fact's prompt) − log P(it | the counterfactual prompt)

    @property
    def total(self) -> float:
        return self.toward_counterfactual + self.toward_fact


@torch.no_grad()
def _last_log_probs(adapter: Adapter, model_input: ModelInput) -> torch.Tensor:
    embeddings = adapter.input_embeddings(model_input)[None]
    return adapter.decoder(inputs_embeds=embeddings).logits[0, -1].float().log_softmax(-1)


def answer_shifts(adapter: Adapter, plans: list[FactProbes], records: dict[int, dict], probe_records: dict[int, dict],
                  modality: Modality) -> list[AnswerShift]:
    """One `AnswerShift` per counterfactual of each plan (`records`: the facts by known_id; `probe_records`: the
    probes by key, spoken rows for speech); a pair whose input cannot be made is left out. Each prompt runs once."""
    cache: dict[tuple[str, int], tuple[ModelInput, torch.Tensor]] = {}

    def scored(kind: str, record: dict) -> tuple[ModelInput, torch.Tensor]:
        key = (kind, int(record["known_id"]))
        if key not in cache:
            model_input = adapter.prepare(record, modality)
            cache[key] = model_input, _last_log_probs(adapter, model_input)
        return cache[key]

    def log_p(scored_input: tuple[ModelInput, torch.Tensor], attribute: str) -> float:
        model_input, log_probs = scored_input
        answer = answer_token(adapter.tokenizer, model_input.prompt_text, attribute, model_input.answer_separator)
        return float(log_probs[answer.id])

    shifts = []
    for plan in progress(plans, desc=f"answer shifts {adapter.model_name} ({modality})", unit="fact",
                     disable=bars_disabled()):
        for probe in plan.counterfactual:
            if probe.probe_id not in probe_records:
                continue
            try:
                fact = scored("fact", records[plan.known_id])
                other = scored("probe", probe_records[probe.probe_id])
                shifts.append(AnswerShift(
                    plan.known_id, probe.source_known_id,
                    log_p(other, probe.attribute) - log_p(fact, probe.attribute),
                    log_p(fact, plan.attribute) - log_p(other, plan.attribute)))
            except (ValueError, KeyError) as err:
                logger.warning("known_id=%d, counterfactual %d: no answer shift (%s)", plan.known_id,
                               probe.source_known_id, err)
    return shifts
