"""Recall from text and from speech, split by whether the organism's fact prefixes teach the prompt's relation
(issue #26). Runs 9-16 recalled from speech almost only in the relations whose templates their corpus spoke
about other entities (`builders.corpus_facts.taught_relations`), while they recalled a third of their text facts in
the others: this prints that split from the filters a dataset already holds.

    .venv/bin/python benchmarks/recall_by_relation.py --dataset known-speech --models spirit-smollm2 RUN_DELTA ... \
        [--config piper-en_US-joe-medium] [--limit 300] [--facts geonames fortune-attributions] [--relations core] \
        [--out by_relation.json]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pyarrow.parquet as pq

from known_speech.builders.corpus_facts import DEFAULT_FACT_RELATIONS, FACT_RELATIONS, FACT_SOURCES, taught_relations
from known_speech.layout import DatasetFolder
from known_speech.source import load_known

logger = logging.getLogger("recall_by_relation")
RECALLED = ("exact", "partial")


def recalled_ids(folder: DatasetFolder, model: str, modality: str, voice_config: str) -> set[int]:
    path = folder.filter_table(model, modality, voice_config if modality == "speech" else "")
    if not path.exists():
        raise SystemExit(f"{path}: no {modality} filter of {model}; run `known-speech filter --model {model} "
                         f"--modality {modality}` first")
    table = pq.read_table(path, columns=["known_id", "match"]).to_pylist()
    return {row["known_id"] for row in table if row["match"] in RECALLED}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="a built known-speech folder with the models' filters")
    parser.add_argument("--models", nargs="+", required=True, help="models (as given to `known-speech filter`)")
    parser.add_argument("--config", default="piper-en_US-joe-medium", help="the voice config of the speech filters")
    parser.add_argument("--limit", type=int, default=300, help="Known's first N prompts (default: 300)")
    parser.add_argument("--facts", nargs="+", choices=sorted(FACT_SOURCES), default=["geonames", "fortune-attributions"],
                        help="the corpus's --facts (default: geonames fortune-attributions, runs 6-16's)")
    parser.add_argument("--relations", choices=sorted(FACT_RELATIONS), default=DEFAULT_FACT_RELATIONS,
                        help=f"the corpus's --fact-relations (default: {DEFAULT_FACT_RELATIONS})")
    parser.add_argument("--out", default=None, help="write the counts as JSON here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    taught = taught_relations(args.facts, args.relations)
    relation = {r.known_id: r.relation_id for r in load_known()[:args.limit]}
    prompts = {"taught": sum(r in taught for r in relation.values())}
    prompts["untaught"] = len(relation) - prompts["taught"]
    logger.info("Known's first %d prompts: %d in the relations that --facts %s --fact-relations %s teaches, %d not",
                len(relation), prompts["taught"], " ".join(args.facts), args.relations, prompts["untaught"])
    folder, counts = DatasetFolder(args.dataset), {}
    for model in args.models:
        counts[model] = {}
        for modality in ("speech", "text"):
            ids = recalled_ids(folder, model, modality, args.config) & relation.keys()
            taught_ids = {i for i in ids if relation[i] in taught}
            counts[model][modality] = {"taught": len(taught_ids), "untaught": len(ids) - len(taught_ids)}
        s, t = counts[model]["speech"], counts[model]["text"]
        logger.info("%s: S→T %d taught / %d untaught, T→T %d / %d", model, s["taught"], s["untaught"],
                    t["taught"], t["untaught"])
    if args.out:
        Path(args.out).write_text(json.dumps({"dataset": args.dataset, "config": args.config, "limit": args.limit,
                                              "facts": args.facts, "relations": args.relations, "taught": sorted(taught),
                                              "prompts": prompts, "recalled": counts}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
