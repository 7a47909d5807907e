"""The relation-prior baseline: how many facts a model would "recall" by answering each relation's most common
attribute whoever the subject is. Known's answers are skewed (on its first 300 prompts this leave-one-out prior
scores 94, where SmolLM2 recalls 81 from text), so every recall figure stands beside it.

Each fact's prior answer is the most common attribute of its relation among all the other facts of the source
(leave-one-out: a fact's own answer does not vote for itself; ties go to the alphabetically first), scored with
the filter's own `classify_answer`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .matching import classify_answer

__all__ = ["RelationPrior", "relation_prior"]


@dataclass(frozen=True)
class RelationPrior:
    answers: dict[int, str]  # known_id -> the relation's most common attribute among the other facts
    hits: frozenset[int]  # known_ids whose attribute that answer matches (exact or partial)

    def count(self, known_ids) -> int:
        return sum(int(known_id) in self.hits for known_id in known_ids)


def relation_prior(pool: list[dict]) -> RelationPrior:
    """The leave-one-out prior answer of every fact of `pool` (a whole source: its records' `known_id`,
    `relation_id` and `attribute`)."""
    by_relation: dict[str, Counter] = {}
    for record in pool:
        by_relation.setdefault(record["relation_id"], Counter())[record["attribute"]] += 1
    answers, hits = {}, set()
    for record in pool:
        counts = by_relation[record["relation_id"]].copy()
        counts[record["attribute"]] -= 1
        ranked = sorted(((n, attribute) for attribute, n in counts.items() if n > 0), key=lambda x: (-x[0], x[1]))
        if not ranked:
            continue  # the relation's only fact: no prior
        known_id = int(record["known_id"])
        answers[known_id] = ranked[0][1]
        if classify_answer(ranked[0][1], record["attribute"]) != "none":
            hits.add(known_id)
    return RelationPrior(answers, frozenset(hits))
