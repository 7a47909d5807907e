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
from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm

from known_speech.atomic import atomic_write_text
from known_speech.progress import bars_disabled

from .adapter import Adapter
from .filtering import FilterRow, filter_settings, generate_halving, prepared_batches
from .matching import classify_answer
from .model_input import Modality
from .setting_differences import setting_differences
from .subject_probes import BLIND_NAMES, DEFAULT_COUNTERFACTUALS, DEFAULT_PROBE_SEED, FactProbes, plan_probes

__all__ = ["PROBES_SUFFIX", "probes_file", "probe_settings", "to_probe", "probe_recalled", "apply_probes"]

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
            tqdm(total=len(asked), desc=f"probes {adapter.model_name} ({modality})", unit="prompt",
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
