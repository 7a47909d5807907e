"""Which unit tokenizer to train `spirit-smollm2` on: phone purity, cluster purity, PNMI and de-duplication
of k-means units over Whisper tiny.en's encoder (own window and padded 30 s window) and over log-mel
frames, at k in {100, 200, 500} and at 25 and 50 Hz, scored against Piper's exact phoneme durations.

    .venv/bin/python benchmarks/unit_quality.py --corpus corpus --fit 1000 --score 300 --out unit_quality.json

k-means is fitted on `--fit` whole-sentence utterances of the corpus's train split and scored on `--score`
of its held-out split (frames labelled by the phoneme at their centre).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from known_speech.builders.corpus import waveform
from known_speech.unit_quality import frame_labels, unit_quality
from known_speech.whisper_units import UnitTokenizerSpec, WhisperFeatures, fit_unit_tokenizer

logger = logging.getLogger("unit_quality")

SETTINGS = [("whisper", "own"), ("whisper", "padded"), ("mel", "own")]  # (features, encoder window)
RATES = (25.0, 50.0)
KS = (100, 200, 500)


def _rows(corpus: str, split: str, count: int) -> list[dict]:
    """The first `count` whole-sentence utterances of a split, read shard by shard (audio undecoded)."""
    import pyarrow.parquet as pq

    rows = []
    for shard in sorted((Path(corpus) / "data").glob("shard-*.parquet")):
        rows += [row for row in pq.read_table(shard).to_pylist() if row["split"] == split and row["kind"] == "sentence"]
        if len(rows) >= count:
            break
    rows = rows[:count]
    if len(rows) < count:
        logger.warning("only %d %s utterances in %s", len(rows), split, corpus)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="corpus")
    parser.add_argument("--fit", type=int, default=1000, help="utterances k-means is fitted on")
    parser.add_argument("--score", type=int, default=300, help="held-out utterances scored")
    parser.add_argument("--out", default="unit_quality.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-frames", type=int, default=60_000, help="frames k-means is fitted on, drawn at random")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fit_rows, score_rows = _rows(args.corpus, "train", args.fit), _rows(args.corpus, "test", args.score)
    fit_audio = [waveform(r) for r in fit_rows]
    score_audio = [waveform(r) for r in score_rows]
    results = []
    for source, window in SETTINGS:
        extractor = WhisperFeatures(source, window)
        started = time.perf_counter()
        fit_native = [extractor.native(a) for a in tqdm(fit_audio, desc=f"{source}/{window}", leave=False)]
        seconds_per_utterance = (time.perf_counter() - started) / len(fit_audio)
        score_native = [extractor.native(a) for a in score_audio]
        for rate in RATES:
            extractor.rate_hz = rate
            fit_features = [extractor.pool(f) for f in fit_native]
            score_features = [extractor.pool(f) for f in score_native]
            labels = [frame_labels(r["phonemes"], f.shape[0], rate) for r, f in zip(score_rows, score_features)]
            for k in KS:
                spec = UnitTokenizerSpec(source, "tiny.en", window, rate, k, extractor.encoder_sha256)
                tokenizer = fit_unit_tokenizer(spec, fit_features, seed=args.seed, max_frames=args.max_frames)
                quality = unit_quality([tokenizer.quantize(f) for f in score_features], labels)
                results.append({"tokenizer": spec.name, "source": source, "window": window, "rate_hz": rate, "k": k,
                                "features_s_per_utterance": seconds_per_utterance, **quality.to_dict()})
                logger.info("%-40s purity %.3f cluster %.3f PNMI %.3f dedup %.3f", spec.name, quality.phone_purity,
                            quality.cluster_purity, quality.pnmi, quality.dedup_removed)
    summary = {"fit_utterances": len(fit_rows), "score_utterances": len(score_rows), "seed": args.seed,
               "corpus": str(Path(args.corpus).resolve()), "results": results}
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(f"{'tokenizer':42} {'purity':>7} {'cluster':>7} {'PNMI':>6} {'dedup':>6} {'s/utt':>6}")
    for r in results:
        print(f"{r['tokenizer']:42} {r['phone_purity']:7.3f} {r['cluster_purity']:7.3f} {r['pnmi']:6.3f} "
              f"{r['dedup_removed']:6.3f} {r['features_s_per_utterance']:6.3f}")


if __name__ == "__main__":
    main()
