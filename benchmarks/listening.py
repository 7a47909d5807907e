"""Does spirit-smollm2 hear the subject where the benchmark says it is? The listening measures of
`evaluation/organism/listening.py` on a built Known folder, with 95 % bootstrap intervals over prompts:
corrupting the subject's units against a control span of as many units and against the subject's span moved
to the next word, and P(answer) from the units in order against shuffled; and, for the facts the model's filter
recalls from speech, the generation again with the units shuffled and with the subject's units swapped for those
of another prompt of the same relation whose answer differs (what a recall rests on); and how far the model's
state at the subject's last unit is from the backbone's at the subject's last written token (`subject_state_gaps`);
and whether the model's transcript of each prompt holds its subject (`subject_heard`), against the recall filters:
how much of the gap between recall from text and from speech is hearing the subject; and recall with the subject
spoken and the template written, and the reverse (`recall_by_part`): which part, heard, loses the fact; and, for
the facts the model recalls from text, recall from speech with the subject's last unit given its text state
(`subject_state_patch`): whether the subject's state there is what speech lacks; and that state moved only part of
the way from the spoken one to the text one (`subject_state_dose`): how near it has to come before recall follows;
and that state written in one layer's output only (`subject_state_from_layer`): from which layer on it must be right.

    python benchmarks/listening.py --dataset known-speech --config piper-en_US-joe-medium --limit 300 --out listening.json
    python benchmarks/listening.py --dataset known-speech --measures hearing,parts --out hearing.json
    python benchmarks/listening.py --dataset known-speech --measures patch --out patch.json
    python benchmarks/listening.py --dataset known-speech --measures dose --out dose.json
    python benchmarks/listening.py --dataset known-speech --measures layer --layers 0,4,8,12,16,20,24,29 --out layer.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

import numpy as np


MEASURES = ("spans", "answer", "recall", "state", "hearing", "parts", "patch", "dose", "layer")


def _hearing_table(hearing, from_text: set[int], from_speech: set[int]) -> dict:
    """The prompts whose subject was heard whole, and the others: how many of each the text and the speech recall
    filters recall."""
    table = {}
    for heard in (True, False):
        ids = {h.known_id for h in hearing if h.heard == heard}
        table["heard" if heard else "not heard"] = {
            "prompts": len(ids), "recalled from text": len(ids & from_text),
            "recalled from speech": len(ids & from_speech), "recalled from both": len(ids & from_text & from_speech)}
    return table


def _recalls_by_setting(results) -> list[int]:
    """How many prompts recall at each setting of a sweep (a dose's fractions, the layers written): the column sums
    of each result's `recalled()`."""
    return [int(n) for n in np.array([r.recalled() for r in results]).sum(0)] if results else []


def _parts_table(parts, from_text: set[int], from_speech: set[int]) -> dict:
    """Recall with the whole prompt written, spoken, and with one part spoken: over every prompt, and over those
    recalled from text (what speech loses of what the model knows)."""
    table = {}
    for name, ids in (("every prompt", {p.known_id for p in parts}), ("recalled from text", from_text)):
        chosen = [p for p in parts if p.known_id in ids]
        table[name] = {"prompts": len(chosen), "written": len(ids & from_text), "spoken": len(ids & from_speech),
                       "subject spoken, template written": sum(p.match("subject_spoken") != "none" for p in chosen),
                       "subject written, template spoken": sum(p.match("template_spoken") != "none" for p in chosen)}
    return table


def main() -> None:
    from datasets import load_dataset

    from known_speech.evaluation.adapter import adapter_class, adapter_for
    from known_speech.evaluation.aggregate import estimate_mean
    from known_speech.evaluation.organism.listening import (PreparedOnce, answer_from_speech, recall_by_part,
                                                            recall_from_speech, subject_heard, subject_state_gaps,
                                                            subject_state_dose, subject_state_from_layer,
                                                            subject_state_patch,
                                                            subject_unit_effects)
    from known_speech.loading import load_causal_lm
    from known_speech.evaluation.records import recalled_records

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a folder that `known-speech build` wrote")
    parser.add_argument("--config", default="piper-en_US-joe-medium", help="its voice config")
    parser.add_argument("--model", default="spirit-smollm2", help="spirit-smollm2 or a delta folder")
    parser.add_argument("--limit", type=int, default=300, help="the first N prompts")
    parser.add_argument("--measures", default=",".join(MEASURES),
                        type=lambda text: [m for m in text.split(",") if m],
                        help=f"comma-separated, of {','.join(MEASURES)} (default: all)")
    parser.add_argument("--layers", type=lambda text: tuple(int(layer) for layer in text.split(",") if layer),
                        help="decoder layers (from 0) whose output takes the text state: for --measures layer, one "
                             "at a time (default 0,4,8,12,16,20,24,29); for dose, these together (default: every one)")
    parser.add_argument("--out", help="JSON file for the per-prompt values and the estimates")
    args = parser.parse_args()
    unknown = sorted(set(args.measures) - set(MEASURES))
    if unknown:
        parser.error(f"--measures: unknown {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
    rows = list(load_dataset(args.dataset, args.config, split="train"))[:args.limit]
    adapter = PreparedOnce(adapter_class(adapter_for(args.model))(args.model))  # the measures share inputs
    started = time.perf_counter()
    measured = set(args.measures)
    effects = subject_unit_effects(adapter, rows) if "spans" in measured else []
    answers = answer_from_speech(adapter, rows) if "answer" in measured else []
    # the filters' recalled prompts, each read once for every measure that needs it
    from_text = (recalled_records(rows, args.dataset, args.model, "text", "")
                 if measured & {"hearing", "parts", "patch", "dose", "layer"} else [])
    from_speech = (recalled_records(rows, args.dataset, args.model, "speech", args.config)
                   if measured & {"recall", "hearing", "parts"} else [])
    recalled = from_speech if "recall" in measured else []
    recalls = recall_from_speech(adapter, recalled, partners=rows) if recalled else []  # partners of the same relation
    gaps = subject_state_gaps(adapter, rows, load_causal_lm("smollm2")[0]) if "state" in measured else []
    hearing = subject_heard(adapter, rows) if "hearing" in measured else []
    parts = recall_by_part(adapter, rows) if "parts" in measured else []
    known = from_text if measured & {"patch", "dose", "layer"} else []
    patches = subject_state_patch(adapter, known, partners=rows) if known and "patch" in measured else []  # what speech loses of what it knows
    doses = subject_state_dose(adapter, known, layers=args.layers) if known and "dose" in measured else []
    layers = args.layers or (0, 4, 8, 12, 16, 20, 24, 29)
    from_layer = subject_state_from_layer(adapter, known, layers) if known and "layer" in measured else []
    seconds = time.perf_counter() - started
    drops = {name: np.array([e.clean - getattr(e, name) for e in effects]) for name in ("subject", "control", "shifted")}
    quantities = {
        "drop of log P(subject's first token), subject's units corrupted": drops["subject"],
        "... a control span of as many units corrupted": drops["control"],
        "... the subject's span moved to the next word": drops["shifted"],
        "subject − control": drops["subject"] - drops["control"],
        "subject − moved span": drops["subject"] - drops["shifted"],
        "log P(answer), units in order − shuffled": np.array([a.in_order - a.shuffled for a in answers]),
        "subject's state from speech, distance to the backbone's from text (mean over layers)":
            np.array([np.mean(g.speech) for g in gaps]),
        "... units shuffled − in order": np.array([np.mean(g.shuffled) - np.mean(g.speech) for g in gaps]),
        "... at the next word's last unit (the span moved by a word) − at the subject's":
            np.array([np.mean(g.moved) - np.mean(g.speech) for g in gaps if g.moved]),
        "... the model's own text path": np.array([np.mean(g.text) for g in gaps]),
        "log P(answer) from speech, the subject's last unit patched with its text state − as spoken":
            np.array([p.log_p_patched - p.log_p_heard for p in patches]),
        "... patched at the next word's last unit instead − as spoken": np.array([p.log_p_moved - p.log_p_heard for p in patches]),
        "... patched with another subject's text state − as spoken": np.array([p.log_p_swapped - p.log_p_heard for p in patches]),
    }
    print(f"{args.model} on {args.dataset} ({args.config}), first {len(rows)} prompts ({', '.join(args.measures)}); "
          f"{len(effects)} usable for the span measures, {len(answers)} for the answer; {seconds:.0f} s")
    estimates = {}
    for name, values in quantities.items():
        if not values.size:
            continue
        estimate = estimate_mean(values[:, None])
        estimates[name] = {"n": int(estimate.n[0]), "mean": float(estimate.mean[0]),
                           "ci95": [float(estimate.low[0]), float(estimate.high[0])]}
        print(f"  {name}: {estimate.mean[0]:+.3f} [{estimate.low[0]:+.3f}, {estimate.high[0]:+.3f}] (n={estimate.n[0]})")
    ranks = {}
    for modality in ("speech", "text") if answers else ():
        values = np.array([getattr(a, "rank_" + modality) for a in answers])
        ranks[modality] = {"top1": int((values == 0).sum()), "top10": int((values < 10).sum()),
                           "median": float(np.median(values)) if values.size else None}
        print(f"  rank of the answer's first token from {modality}: first {ranks[modality]['top1']}, in the top 10 "
              f"{ranks[modality]['top10']}, median {ranks[modality]['median']} (of {values.size})")
    kept = {condition: sum(r.match(condition) != "none" for r in recalls) for condition in ("heard", "shuffled", "swapped")}
    kept["swapped, the swapped-in subject's answer"] = sum(r.match("swapped", r.swapped_attribute) != "none" for r in recalls)
    if "recall" in measured:
        print(f"  recalled from speech by the filter: {len(recalled)}; generated again, recalled: " +
              ", ".join(f"{k} {v}" for k, v in kept.items()))
    recalled_ids = tuple({int(r["known_id"]) for r in records} for records in (from_text, from_speech))
    hearing_table = _hearing_table(hearing, *recalled_ids) if hearing else {}
    for name, counts in hearing_table.items():
        print(f"  subject {name} under the transcription cue: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    parts_table = _parts_table(parts, *recalled_ids) if parts else {}
    for name, counts in parts_table.items():
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    patch_table = {condition: sum(p.match(condition) != "none" for p in patches)
                   for condition in ("heard", "patched", "moved", "swapped")}
    followed = "swapped, the swapped-in subject's answer"
    patch_table[followed] = sum(p.match("swapped", p.swapped_attribute) != "none" for p in patches)
    if patches:
        print(f"  of the {len(patches)} facts recalled from text (with a word after the subject), recalled from speech: "
              f"as spoken {patch_table['heard']}, the subject's last unit patched with its text state "
              f"{patch_table['patched']}, the next word's last unit patched instead {patch_table['moved']}, the subject's "
              f"last unit patched with another subject's {patch_table['swapped']} (that subject's answer: "
              f"{patch_table[followed]})")
    dose_table = {f"{fraction:g}": n for fraction, n in zip(doses[0].fractions, _recalls_by_setting(doses))} if doses else {}
    if doses:
        print(f"  of the {len(doses)} facts recalled from text, recalled from speech with the subject's last unit "
              f"({'layers ' + ','.join(map(str, args.layers)) if args.layers else 'every layer'}) moved a "
              f"fraction of the way to its text state (relative distance left: (1 − fraction)² × "
              f"{np.mean([d.spoken_distance for d in doses]):.3f} on average): " +
              ", ".join(f"{k}: {v}" for k, v in dose_table.items()))
    layer_table = {str(layer): {"recalled": n, "mean log P(answer)": float(np.mean([r.log_p[i] for r in from_layer]))}
                   for i, (layer, n) in enumerate(zip(layers, _recalls_by_setting(from_layer)))}
    if from_layer:
        print(f"  of the {len(from_layer)} facts recalled from text, recalled from speech with the subject's text state "
              f"written at its last unit in one layer's output (layer: recalled, mean log P(answer)): " +
              ", ".join(f"{k}: {v['recalled']}, {v['mean log P(answer)']:.2f}" for k, v in layer_table.items()))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump({"model": adapter.describe(), "dataset": args.dataset, "config": args.config, "prompts": len(rows),
                       "measures": args.measures, "seconds": round(seconds, 1),
                       "estimates": estimates, "effects": [e.to_dict() for e in effects],
                       "answer_ranks": ranks, "answers": [a.to_dict() for a in answers],
                       "recall_controls": kept, "recalls": [r.to_dict() for r in recalls],
                       "subject_state_gaps": [asdict(g) for g in gaps],
                       "hearing": hearing_table, "subjects_heard": [h.to_dict() for h in hearing],
                       "parts": parts_table, "recalls_by_part": [p.to_dict() for p in parts],
                       "patch": patch_table, "subject_state_patches": [p.to_dict() for p in patches],
                       "dose": dose_table, "subject_state_doses": [d.to_dict() for d in doses],
                       "layer": layer_table, "subject_state_from_layer": [r.to_dict() for r in from_layer]}, out, indent=1)


if __name__ == "__main__":
    main()
