"""The prompts that tell recall of a fact from a template's favourite answer.

Known's answers are skewed by relation ("… follows the religion of" → "Islam" for a third of the prompts), so a
model can "recall" a fact without reading its subject. Each recalled fact is asked again:
  - subject-blind: the prompt with the subject replaced by made-up names (`BLIND_NAMES`). A fact recalled from
    any of them is a template's answer, not the subject's;
  - counterfactual: the prompt with the subject of another Known fact of the same relation whose attribute differs,
    k of them drawn with a fixed seed from the whole relation. A model that reads the subject names that fact's
    own attribute.
The prompt keeps its own words around the subject (Known's `template` field does not always hold the prompt's
last words), so only the subject changes. A probe is keyed by its prompt text (`probe_id`): a blind prompt serves
every fact of its template, and spoken probes are built once.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .matching import classify_answer

__all__ = ["BLIND_NAMES", "DEFAULT_COUNTERFACTUALS", "DEFAULT_PROBE_SEED", "ProbeKind", "ProbePrompt", "FactProbes",
           "plan_probes", "probe_id", "unique_probes"]

# made-up names that no model can know anything of; none is a Known subject, a place or a person we could find
BLIND_NAMES = ("Tavrin Kolmes", "Brella Quintash", "Orvel Dimbrook")
DEFAULT_COUNTERFACTUALS = 3
DEFAULT_PROBE_SEED = 0
ProbeKind = Literal["blind", "counterfactual"]


def probe_id(prompt: str) -> int:
    """A probe's key: 31 bits of the sha256 of its prompt text (the same on every run and machine)."""
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class ProbePrompt:
    """One prompt asked beside a fact: the fact's prompt with another subject in the subject's place."""

    kind: ProbeKind
    prompt: str
    subject: str
    subject_char_span: tuple[int, int]
    attribute: str  # counterfactual: its subject's own attribute; blind: "" (a made-up name has none)
    source_known_id: int  # counterfactual: the Known fact whose subject it is; blind: -1

    @property
    def probe_id(self) -> int:
        return probe_id(self.prompt)

    def record(self, relation_id: str, template: str) -> dict:
        """As a Known-format record (`known_id` is the probe's key), for a text input or a spoken build."""
        return {"known_id": self.probe_id, "subject": self.subject, "attribute": self.attribute, "template": template,
                "prompt": self.prompt, "relation_id": relation_id, "prediction": "",
                "subject_char_span": list(self.subject_char_span)}


@dataclass(frozen=True)
class FactProbes:
    """The probes of one fact, and how they were drawn."""

    known_id: int
    attribute: str
    relation_id: str
    template: str
    blind: tuple[ProbePrompt, ...]
    counterfactual: tuple[ProbePrompt, ...]
    seed: int

    def prompts(self) -> tuple[ProbePrompt, ...]:
        return self.blind + self.counterfactual


def _with_subject(record: dict, subject: str, kind: ProbeKind, attribute: str, source: int) -> ProbePrompt:
    start, end = (int(x) for x in record["subject_char_span"])
    prompt = record["prompt"][:start] + subject + record["prompt"][end:]
    return ProbePrompt(kind, prompt, subject, (start, start + len(subject)), attribute, source)


def _differs(attribute: str, other: str) -> bool:
    """Neither answer would count as the other ("United States" and "United States of America" do)."""
    return classify_answer(other, attribute) == "none" and classify_answer(attribute, other) == "none"


def plan_probes(records: Iterable[dict], pool: list[dict], counterfactuals: int = DEFAULT_COUNTERFACTUALS,
                seed: int = DEFAULT_PROBE_SEED, names: tuple[str, ...] = BLIND_NAMES) -> list[FactProbes]:
    """The probes of each record (a Known record or a dataset row: its `prompt`, `subject_char_span`, `attribute`,
    `relation_id`); counterfactual subjects are drawn from `pool` (the whole source, not only the records asked) by
    `random.Random(f"{seed}:{known_id}")`, so a fact's draw does not depend on which other facts are asked."""
    by_relation: dict[str, list[dict]] = {}
    for other in sorted(pool, key=lambda r: int(r["known_id"])):
        by_relation.setdefault(other["relation_id"], []).append(other)
    plans = []
    for record in records:
        known_id = int(record["known_id"])
        candidates = [other for other in by_relation.get(record["relation_id"], [])
                      if int(other["known_id"]) != known_id and other["subject"] != record["subject"]
                      and _differs(record["attribute"], other["attribute"])]
        drawn = random.Random(f"{seed}:{known_id}").sample(candidates, min(counterfactuals, len(candidates)))
        plans.append(FactProbes(
            known_id=known_id, attribute=record["attribute"], relation_id=record["relation_id"],
            template=record.get("template", ""), seed=seed,
            blind=tuple(_with_subject(record, name, "blind", "", -1) for name in names),
            counterfactual=tuple(_with_subject(record, other["subject"], "counterfactual", other["attribute"],
                                               int(other["known_id"])) for other in drawn)))
    return plans


def unique_probes(plans: Iterable[FactProbes]) -> dict[int, dict]:
    """Every distinct probe prompt of the plans as a record, by its key; two prompts with one key are refused."""
    records: dict[int, dict] = {}
    for plan in plans:
        for probe in plan.prompts():
            record = probe.record(plan.relation_id, plan.template)
            known = records.setdefault(probe.probe_id, record)
            if known["prompt"] != probe.prompt:
                raise ValueError(f"probe prompts {known['prompt']!r} and {probe.prompt!r} share the key "
                                 f"{probe.probe_id}; change the seed (--probe-seed)")
    return records
