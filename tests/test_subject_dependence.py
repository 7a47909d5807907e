"""Recall that rests on the subject: the relation prior, the probes (made-up names, counterfactual subjects) and the
flags, on the real Known set and the real SmolLM2; a model made to answer from the template alone gets no flag."""

from collections import Counter

import pytest

from known_speech.evaluation.matching import classify_answer
from known_speech.evaluation.recall_summary import Count, recall_figures
from known_speech.evaluation.relation_prior import relation_prior
from known_speech.evaluation.subject_probes import BLIND_NAMES, plan_probes, probe_id, unique_probes


@pytest.fixture(scope="module")
def pool(known_records):
    return [r.to_dict() | {"subject_char_span": list(r.subject_char_span)} for r in known_records]


def test_the_relation_prior_is_each_relations_most_common_other_answer(pool):
    """Leave-one-out over the whole source, counted here the slow way: for each of the first 300 facts, every other
    fact of its relation votes with its attribute. Its own vote would let a relation's only "Islam" fact score."""
    prior = relation_prior(pool)
    slow = 0
    for record in pool[:300]:
        votes = Counter(o["attribute"] for o in pool if o["relation_id"] == record["relation_id"] and o is not record)
        best = max(votes.values())
        answer = min(a for a, n in votes.items() if n == best)
        assert prior.answers[record["known_id"]] == answer
        slow += classify_answer(answer, record["attribute"]) != "none"
    assert prior.count(range(300)) == slow
    toy = [{"known_id": 0, "relation_id": "r", "attribute": "A"}, {"known_id": 1, "relation_id": "r", "attribute": "B"},
           {"known_id": 2, "relation_id": "r", "attribute": "B"}, {"known_id": 3, "relation_id": "s", "attribute": "C"}]
    assert relation_prior(toy).answers == {0: "B", 1: "A", 2: "A"}  # ties: alphabetical; alone: no prior
    assert relation_prior(toy).hits == frozenset()


def test_probes_change_only_the_subject_and_draw_from_the_whole_relation(pool):
    by_id = {r["known_id"]: r for r in pool}
    record = by_id[0]  # "Vinson Massif is located in the continent of" -> Antarctica (P30)
    plan, = plan_probes([record], pool, counterfactuals=3, seed=0)
    assert [p.subject for p in plan.blind] == list(BLIND_NAMES)
    assert [p.prompt for p in plan.blind][0] == f"{BLIND_NAMES[0]} is located in the continent of"
    assert len(plan.counterfactual) == 3
    for probe in plan.counterfactual:
        other = by_id[probe.source_known_id]
        assert other["relation_id"] == "P30" and other["attribute"] == probe.attribute != "Antarctica"
        assert probe.prompt == other["subject"] + " is located in the continent of"
        assert probe.prompt[slice(*probe.subject_char_span)] == other["subject"]
    # the draw is the fact's own, whatever else is asked, and changes with the seed
    again = plan_probes([by_id[5], record], pool, counterfactuals=3, seed=0)[1]
    assert again == plan
    draws = {tuple(p.source_known_id for p in plan_probes([record], pool, 3, seed)[0].counterfactual)
             for seed in range(6)}
    assert len(draws) > 1
    # not "the next one": over the relation, the drawn subjects spread across its facts
    drawn = Counter(p.source_known_id for r in pool if r["relation_id"] == "P30"
                    for p in plan_probes([r], pool, 3, 0)[0].counterfactual)
    assert len(drawn) > 15 and max(drawn.values()) <= 12
    # a subject inside the prompt keeps the words around it; probe keys are distinct
    middle = next(r for r in pool if r["prompt"].startswith("In ") and r["relation_id"] == "P37")
    probe = plan_probes([middle], pool, 3, 0)[0].blind[1]
    assert probe.prompt == "In " + BLIND_NAMES[1] + middle["prompt"][middle["subject_char_span"][1]:]
    records = unique_probes(plan_probes(pool[:100], pool, 3, 0))
    assert all(probe_id(r["prompt"]) == k for k, r in records.items())
    assert len({r["prompt"] for r in records.values()}) == len(records)


def test_counts_carry_their_interval_and_split(pool):
    count = Count(81, 300)
    low, high = count.interval
    assert low < 81 < high and str(count) == f"81 [{low:.0f}, {high:.0f}]"
    rows = {k: {"match": "exact" if k % 3 == 0 else "none", "subject_dependent": k % 6 == 0 if k % 3 == 0 else None,
                "follows_subject": k % 12 == 0 if k % 3 == 0 else None} for k in range(1209)}
    dev, held_out, whole = recall_figures(rows, relation_prior(pool))
    assert (dev.asked, held_out.asked, whole.asked) == (600, 609, 1209)
    assert dev.recalled.k == 200 and dev.subject_dependent.k == 100 and dev.follows_subject.k == 50
    assert whole.relation_prior.k == dev.relation_prior.k + held_out.relation_prior.k


@pytest.mark.slow
def test_flags_tell_a_fact_from_a_template_answer_on_smollm2(tmp_path, pool, capsys):
    """The real SmolLM2 on 24 Known prompts: the recalled facts are probed; some rest on the subject and follow a
    counterfactual subject. The same model with every subject removed from its inputs (a model that answers from
    the template alone) recalls the template's favourites and none of them is subject-dependent: the flags fail it."""
    from known_speech.cli import main as cli_main
    from known_speech.evaluation.adapter import adapter_class
    from known_speech.evaluation.filtering import read_filter, run_filter
    from known_speech.evaluation.input_controls import controlled
    from known_speech.evaluation.subject_dependence import probe_filter

    dataset = tmp_path / "ds"
    assert cli_main(["filter", "--model", "smollm2", "--modality", "text", "--dataset", str(dataset),
                     "--limit", "24"]) == 0
    out = capsys.readouterr().out
    assert "smollm2 T→T, dev (n = 24): recalled " in out and "relation prior" in out
    rows = read_filter(dataset / ".build" / "filters" / "smollm2" / "text.jsonl")
    recalled = [r for r in rows.values() if r.match != "none"]
    assert recalled and all(r.subject_dependent is not None for r in recalled)
    assert all(r.subject_dependent is None for r in rows.values() if r.match == "none")
    dependent = [r for r in recalled if r.subject_dependent]
    follows = [r for r in dependent if r.follows_subject]
    print(f"smollm2 on 24: recalled {len(recalled)}, subject-dependent {len(dependent)}, follows {len(follows)}")
    assert len(dependent) >= 2 and len(follows) >= 1
    for row in recalled:  # the flags are what the generations say
        assert row.subject_dependent == all(m == "none" for m in row.blind_matches)
        assert len(row.blind_generations) == len(BLIND_NAMES) and len(row.counterfactual_known_ids) == 3
        own = [classify_answer(g, pool[k]["attribute"]) for g, k in zip(row.counterfactual_generations,
                                                                        row.counterfactual_known_ids)]
        assert row.follows_subject == (row.subject_dependent and any(m != "none" for m in own))

    template = controlled(adapter_class("hf-text")("smollm2"), "template_only", modality="text")
    path = tmp_path / "template" / "text.jsonl"
    records = pool[:24]
    template_rows = probe_filter(template, run_filter(template, records, "text", path), records, pool, "text", path)
    answered = [r for r in template_rows.values() if r.match != "none"]
    print(f"template only: recalled {len(answered)}, subject-dependent "
          f"{sum(bool(r.subject_dependent) for r in answered)}")
    assert answered and not any(r.subject_dependent or r.follows_subject for r in answered)
