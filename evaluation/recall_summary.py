"""A filter's recall figures, per split, each with its n and a 95 % interval, beside the relation prior: recalled,
subject-dependent and follows-subject facts (evaluation.subject_dependence), and how many the relation's most
common answer alone would score on the same prompts (evaluation.relation_prior)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from known_speech.source import known_split

from .relation_prior import RelationPrior

__all__ = ["Count", "RecallFigures", "recall_figures", "SPLITS"]

SPLITS = ("dev", "held-out", "all")


@dataclass(frozen=True)
class Count:
    """k of n, with the Wilson score 95 % interval of k (scipy's `binomtest`)."""

    k: int
    n: int

    @property
    def interval(self) -> tuple[float, float]:
        if not self.n:
            return (0.0, 0.0)
        from scipy.stats import binomtest

        ci = binomtest(self.k, self.n).proportion_ci(confidence_level=0.95, method="wilson")
        return ci.low * self.n, ci.high * self.n

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.k} [{low:.0f}, {high:.0f}]"

    def to_dict(self) -> dict:
        low, high = self.interval
        return {"k": self.k, "n": self.n, "ci95": [round(low, 2), round(high, 2)]}


@dataclass(frozen=True)
class RecallFigures:
    split: str
    asked: int
    recalled: Count
    probed: int  # recalled facts whose probes all ran (the flags are known)
    subject_dependent: Count
    follows_subject: Count
    relation_prior: Count

    def describe(self, label: str) -> str:
        unprobed = f" ({self.recalled.k - self.probed} recalled facts not probed)" if self.probed < self.recalled.k else ""
        return (f"{label}, {self.split} (n = {self.asked}): recalled {self.recalled}, subject-dependent "
                f"{self.subject_dependent}, follows the subject {self.follows_subject}; relation prior "
                f"{self.relation_prior}{unprobed}")

    def to_dict(self) -> dict:
        return {"split": self.split, "asked": self.asked, "probed": self.probed,
                **{name: getattr(self, name).to_dict()
                   for name in ("recalled", "subject_dependent", "follows_subject", "relation_prior")}}


def _get(row, name: str):
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def recall_figures(rows: Mapping[int, object], prior: RelationPrior) -> list[RecallFigures]:
    """Per split (dev: known_id < 600, held-out, all) the counts over the filter's rows (FilterRow or dicts)."""
    figures = []
    for split in SPLITS:
        ids = [k for k in rows if split == "all" or known_split(k) == split]
        recalled = [k for k in ids if _get(rows[k], "match") != "none"]
        flagged = [k for k in recalled if _get(rows[k], "subject_dependent") is not None]
        figures.append(RecallFigures(
            split=split, asked=len(ids), recalled=Count(len(recalled), len(ids)), probed=len(flagged),
            subject_dependent=Count(sum(bool(_get(rows[k], "subject_dependent")) for k in flagged), len(ids)),
            follows_subject=Count(sum(bool(_get(rows[k], "follows_subject")) for k in flagged), len(ids)),
            relation_prior=Count(prior.count(ids), len(ids))))
    return figures
