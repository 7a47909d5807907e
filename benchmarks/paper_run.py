"""The paper's whole experiment at its scale, each stage timed: a random Spirit-LM-base-7B-shaped checkpoint in
the release layout (Llama-2-7B dimensions, a vocabulary the size of the release's, 32,512, with [Text],
[Speech] and [Hu0]..[Hu500] as SentencePiece user-defined pieces, a base-size fairseq mHuBERT-25Hz and a
linear quantizer), speech prompts with the real build's
words and durations (seeded noise as audio, so unit counts follow the real durations), `filter` of both
modalities over all 1,209 items, then `trace` T→T and S→T of a fixed random subset (unfiltered: random weights
recall nothing), on one GPU and under torchrun.

    # here (needs the built dataset): the rows without audio, which the GPU host reads
    .venv/bin/python benchmarks/paper_run.py export-rows --dataset known-speech
    # the GPU host (the package on PYTHONPATH: no registry there)
    python3 benchmarks/paper_run.py setup --root /tmp/paper      # --size tiny: the same on CPU in seconds
    python3 benchmarks/paper_run.py filter --root /tmp/paper --modality text
    python3 benchmarks/paper_run.py trace --root /tmp/paper --modality speech --limit 8
    torchrun --nproc-per-node 2 benchmarks/paper_run.py trace --root /tmp/paper --modality speech --limit 8
    python3 benchmarks/paper_run.py compare --root /tmp/paper   # two-GPU tables against the one-GPU tables
    bash benchmarks/paper_scaling.sh /tmp/paper 48 96           # issue #25's whole matrix on a two-GPU host

Every stage appends one JSON line to <root>/timings.jsonl: the stage, modality, world size, items, and its
seconds (model load, preparation, generation or tracing, the whole process from its first line).
"""

from __future__ import annotations

import time

PROCESS_STARTED = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS_FILE = ROOT / "benchmarks" / "data" / "known_speech_rows.json.gz"
VOICE = "piper-en_US-joe-medium"
VOCAB = 32_512  # Spirit LM base's vocabulary (MODEL_CARD): 32,000 text pieces, the markers, [Hu0]..[Hu500], padding
LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5)
MHUBERT_BASE_25HZ = {  # fairseq model_cfg of mHuBERT-base-25Hz: HuBERT-base with one more stride-2 conv (640 samples/frame)
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 3",
    "encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12,
    "activation_fn": "gelu", "layer_type": "transformer", "extractor_mode": "default", "conv_bias": False,
    "layer_norm_first": False, "conv_pos": 128, "conv_pos_groups": 16, "label_rate": 25.0,
}
TINY_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=4096)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KEPT_COLUMNS = ("known_id", "subject", "attribute", "template", "prompt", "relation_id", "spoken_text", "duration_s",
                "words", "subject_char_span", "subject_time_span")


def _record_timing(root: Path, **timing) -> None:
    if int(os.environ.get("RANK", 0)) == 0:
        timing["process_seconds"] = round(time.perf_counter() - PROCESS_STARTED, 2)
        timing["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        with open(root / "timings.jsonl", "a") as handle:
            handle.write(json.dumps(timing) + "\n")
        print(json.dumps(timing), flush=True)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def export_rows(args) -> None:
    """The built voice config's rows without audio (words, spans, durations): the GPU host has no FFmpeg."""
    from datasets import load_dataset

    rows = load_dataset(args.dataset, VOICE, split="train").remove_columns(["audio"])
    kept = [{name: row[name] for name in KEPT_COLUMNS} for row in rows]
    ROWS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(ROWS_FILE, "wt", encoding="utf-8") as handle:
        json.dump(kept, handle)
    print(f"{ROWS_FILE}: {len(kept)} rows")


UNIT_REPEAT = 0.3  # chance that a 25 Hz frame repeats its left neighbour's unit (de-duplication keeps ~70 %)


def speech_rows(provenance=None) -> list[dict]:
    """The real rows with seeded noise of each row's duration as its 16 kHz audio and, given the speech
    tokenizer's provenance, stored units: one per 25 Hz frame of the row's duration, repeating at
    UNIT_REPEAT. (A random mHuBERT maps noise to nearly one unit, which would make every prompt a few
    tokens long; the stored units keep the prompt lengths of real speech.)"""
    with gzip.open(ROWS_FILE, "rt", encoding="utf-8") as handle:
        rows = json.load(handle)
    for row in rows:
        generator = np.random.default_rng(int(row["known_id"]))
        samples = int(round(row["duration_s"] * 16_000))
        row["audio"] = {"array": (0.1 * generator.standard_normal(samples)).astype(np.float32), "sampling_rate": 16_000}
        if provenance is not None:
            frames = samples // 640
            fresh = generator.integers(0, 500, frames)
            repeat = generator.random(frames) < UNIT_REPEAT
            units = [int(fresh[0])]
            for frame in range(1, frames):
                units.append(units[-1] if repeat[frame] else int(fresh[frame]))
            row["speech_token_spans"] = [{
                "tokenizer": "hubert-25hz", "rate_hz": 25.0, "frame_start": 0, "frame_end": frames, "units": units,
                "units_tokenizer": provenance.tokenizer, "units_checkpoint_sha256": provenance.checkpoint_sha256,
                "units_quantizer": provenance.quantizer}]
    return rows


def _speech_rows_for(adapter) -> list[dict]:
    return speech_rows(adapter.speech_tokenizer.provenance)


def text_records() -> list[dict]:
    from known_speech.evaluation.records import load_records

    return load_records("text", dataset="")


def setup(args) -> None:
    """The release layout at full size: tokenizer, bf16 Llama-2-7B-shaped weights, mHuBERT and quantizer."""
    sys.path.insert(0, str(ROOT))
    from tests.release_formats import (SPIRITLM_MARKERS, train_sentencepiece, write_fairseq_hubert,
                                       write_linear_quantizer, write_llama_tokenizer)
    from transformers import LlamaConfig, LlamaForCausalLM

    started = time.perf_counter()
    root = Path(args.root)
    lm_dir = _lm_dir(root)
    # the markers and units, then fillers, as user-defined pieces: 32,512 pieces as the release has
    text_pieces = 3000
    fillers = [f"[Unused{i}]" for i in range(VOCAB - text_pieces - len(SPIRITLM_MARKERS) - 3)]
    model_file = train_sentencepiece(root / "sentencepiece", SPIRITLM_MARKERS + fillers, vocab_size=text_pieces)
    write_llama_tokenizer(lm_dir, model_file, SPIRITLM_MARKERS, "pieces", bos=True)
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_file=str(model_file)).get_piece_size()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, bos_token_id=1, eos_token_id=2, **(LLAMA2_7B if args.size == "7b" else TINY_LLAMA))
    with torch.device(DEVICE):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(lm_dir)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    hubert_dir = root / "speech_tokenizer" / "hubert_25hz"
    if args.size == "7b":
        write_fairseq_hubert(hubert_dir / "mhubert_base_25hz.pt", config=MHUBERT_BASE_25HZ)
        write_linear_quantizer(hubert_dir / "L11_quantizer_500.pt", dim=768)
    else:
        write_fairseq_hubert(hubert_dir / "mhubert_base_25hz.pt")
        write_linear_quantizer(hubert_dir / "L11_quantizer_500.pt")
    _record_timing(root, stage="setup", vocab=vocab, parameters=parameters, seconds=round(time.perf_counter() - started, 2))


def _lm_dir(root: Path) -> Path:
    return root / "spiritlm_model" / "spirit-lm-base-7b"


def _adapter(root: Path, device: str = DEVICE):
    from known_speech.evaluation.spiritlm import SpiritLMAdapter

    return SpiritLMAdapter(str(_lm_dir(root)), device=device, dtype="bfloat16")


def filter_(args) -> None:
    from known_speech.evaluation.filtering import run_filter

    root = Path(args.root)
    started = time.perf_counter()
    adapter = _adapter(root)
    loaded = time.perf_counter()
    records = (text_records() if args.modality == "text" else _speech_rows_for(adapter))[: args.limit]
    units_seconds = None
    if args.modality == "speech":  # what extracting the units from audio costs (stored units are used below)
        _synchronize()
        begun = time.perf_counter()
        for record in records:
            adapter.speech_tokenizer.encode(record["audio"]["array"])
        _synchronize()
        units_seconds = round(time.perf_counter() - begun, 2)
    path = root / "filters" / f"{args.modality}-batch{args.batch_size or 'auto'}-{len(records)}.jsonl"
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)
    _synchronize()
    begun = time.perf_counter()
    rows = run_filter(adapter, records, args.modality, path, voice_config=VOICE if args.modality == "speech" else "",
                      batch_size=args.batch_size)
    _synchronize()
    _record_timing(root, stage="filter", modality=args.modality, batch_size=args.batch_size or "auto", items=len(rows),
                   failed=sum(bool(r.error) for r in rows.values()), load_seconds=round(loaded - started, 2),
                   units_seconds=units_seconds,
                   filter_seconds=round(time.perf_counter() - begun, 2), rows_file=path.name)


def trace(args) -> None:
    from known_speech.evaluation.run_config import TraceRunConfig
    from known_speech.evaluation.trace_run import run_trace
    from known_speech.tracing import TraceOptions

    root = Path(args.root)
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    started = time.perf_counter()
    adapter = _adapter(root, device=f"cuda:{local}" if DEVICE == "cuda" else DEVICE)
    loaded = time.perf_counter()
    records = text_records() if args.modality == "text" else _speech_rows_for(adapter)
    random.Random(0).shuffle(records)  # a fixed random subset: the first --limit of a seeded shuffle
    config = TraceRunConfig(model=str(_lm_dir(root)), adapter="spiritlm",
                            modality=args.modality, voice_config=VOICE, unfiltered=True, limit=args.limit,
                            dtype="bfloat16", trace=TraceOptions(samples=args.samples))
    engine = ("compiled" if args.compile else "eager") + ("" if args.kernels == "torch" else f"-{args.kernels}")
    out = root / f"results-{world}gpu-{engine}"
    summary = run_trace(config, out=out, device=DEVICE, compile=args.compile, records=records, adapter=adapter,
                        kernels=args.kernels)
    _record_timing(root, stage="trace", modality=args.modality, world_size=world, compile=args.compile,
                   kernels=args.kernels,
                   load_seconds=round(loaded - started, 2),
                   items=summary.items, traced=summary.traced, failed=summary.failed, calibrated_on=len(records),
                   run_trace_seconds=round(summary.seconds, 2),
                   per_rank_seconds=[round(s, 2) for s in summary.per_rank_seconds],
                   per_rank_trace_seconds=[round(s, 2) for s in summary.per_rank_trace_seconds])


def compare(args) -> None:
    """The two-GPU runs' merged tables against the one-GPU run's, engine by engine: every result file of one is in
    the other, and every score table and score is bit-identical (max |difference| 0.0). A file that only one
    side has is listed among the differences, except the two-GPU run's files beyond a one-GPU run given a
    smaller --limit (the first N of the same prompts)."""
    root = Path(args.root)
    for single in sorted(root.glob("results-1gpu-*")):
        double = root / single.name.replace("results-1gpu-", "results-2gpu-")
        if not double.is_dir():
            continue
        for run in sorted(path.parent.relative_to(single) for path in single.rglob("run.json")):
            ones = {path.relative_to(single / run): path for path in (single / run).rglob("*.npz")}
            twos = {path.relative_to(double / run): path for path in (double / run).rglob("*.npz")}
            limits = [json.loads((side / run / "run.json").read_text())["config"]["limit"] for side in (single, double)]
            one_gpu_subset = limits[0] is not None and (limits[1] is None or limits[0] < limits[1])
            largest = 0.0
            differing = [f"{name}: only on one GPU" for name in sorted(set(ones) - set(twos))]
            if not one_gpu_subset:
                differing += [f"{name}: only on two GPUs" for name in sorted(set(twos) - set(ones))]
            for name in sorted(set(ones) & set(twos)):
                one, two = np.load(ones[name]), np.load(twos[name])
                header_one, header_two = json.loads(str(one["header"])), json.loads(str(two["header"]))
                for key in ("tokens", "input_ids", "answer_id", "high_score", "low_score", "noise_std"):
                    if header_one[key] != header_two[key]:
                        differing.append(f"{name}:{key}")
                for key in one.files:
                    if key.startswith("scores_"):
                        if one[key].shape != two[key].shape:
                            differing.append(f"{name}:{key} shape")
                        else:
                            largest = max(largest, float(np.nanmax(np.abs(one[key] - two[key]), initial=0.0)))
            _record_timing(root, stage="compare", engine=single.name.removeprefix("results-1gpu-"), run=str(run),
                           limits=limits,
                           files_one_gpu=len(ones), files_two_gpus=len(twos), common=len(set(ones) & set(twos)),
                           max_abs_difference=largest, differing=differing[:20])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    export = stages.add_parser("export-rows", help="write benchmarks/data/known_speech_rows.json.gz from a build")
    export.add_argument("--dataset", default="known-speech")
    export.set_defaults(handler=export_rows)
    merged = stages.add_parser("compare", help="the two-GPU runs' tables against the one-GPU runs'")
    merged.add_argument("--root", required=True)
    merged.set_defaults(handler=compare)
    for name, handler in (("setup", setup), ("filter", filter_), ("trace", trace)):
        stage = stages.add_parser(name)
        stage.add_argument("--root", required=True)
        stage.set_defaults(handler=handler)
        if name == "setup":
            stage.add_argument("--size", choices=("7b", "tiny"), default="7b")
        else:
            stage.add_argument("--modality", choices=("text", "speech"), required=True)
            stage.add_argument("--limit", type=int, default=None)
        if name == "filter":
            stage.add_argument("--batch-size", type=int, default=None, help="default: from free GPU memory")
        if name == "trace":
            stage.add_argument("--samples", type=int, default=10)
            stage.add_argument("--compile", action="store_true")
            stage.add_argument("--kernels", choices=("torch", "liger"), default="torch")
    args = parser.parse_args()
    if getattr(args, "root", None):
        Path(args.root).mkdir(parents=True, exist_ok=True)
    args.handler(args)


if __name__ == "__main__":
    main()
