"""The `known-speech` command line. Thin: parse, call the library, report."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .settings import (
    ALIGNERS,
    DEFAULT_ALIGNERS,
    DEFAULT_ASR_MODEL,
    DEFAULT_CTC_MODEL,
    DEFAULT_OUTPUT_DIR,
    DEFAULT_VOICE,
)

__all__ = ["main"]


def _build(args: argparse.Namespace) -> int:
    from known_speech.builders.build import build_dataset

    result = build_dataset(
        args.out,
        engine=args.engine,
        voice=args.voice,
        asr_model=args.asr_model,
        source=args.source,
        limit=args.limit,
        workers=args.workers,
        retry_failed=args.retry_failed,
        aligners=tuple(args.aligner or DEFAULT_ALIGNERS),
        ctc_model=args.ctc_model,
        unit_tokenizer=args.unit_tokenizer,
    )
    summary = result.summary
    print(summary.describe())
    for failure in summary.failures:
        print(f"  failed known_id={failure['known_id']} at {failure['stage']}: {failure['reason']}")
    print(f"load it with: datasets.load_dataset({args.out!r}, {result.config_name!r})")
    return 0


def _filter(args: argparse.Namespace) -> int:
    from known_speech.builders.writer import render_card
    from known_speech.evaluation.adapter import adapter_class
    from known_speech.evaluation.filtering import filter_file, run_filter, write_views
    from known_speech.evaluation.runner import default_adapter, load_records

    records = load_records(args.modality, args.dataset, args.config)[: args.limit]
    adapter = adapter_class(args.adapter or default_adapter(args.model))(args.model, device=args.device, dtype=args.dtype,
                                                                          **args.adapter_options)
    path = filter_file(args.dataset, args.model, args.modality, args.config)
    rows = run_filter(adapter, records, args.modality, path, voice=args.config, max_new_tokens=args.max_new_tokens)
    write_views(args.dataset, args.model)
    if (Path(args.dataset) / "build_stats.json").exists():
        render_card(args.dataset)
    counts = {match: sum(row.match == match for row in rows.values()) for match in ("exact", "partial", "none")}
    errors = sum(bool(row.error) for row in rows.values())
    print(f"{args.model} ({args.modality}): {len(rows)} items, exact {counts['exact']}, partial {counts['partial']}, "
          f"none {counts['none']} ({errors} could not be run); written to {path}")
    return 0


def _trace(args: argparse.Namespace) -> int:
    from known_speech.evaluation.runner import TraceRunConfig, run_trace

    config = TraceRunConfig(
        model=args.model, modality=args.modality, adapter=args.adapter or "", dataset=args.dataset, voice=args.config,
        kinds=tuple(args.kinds.split(",")), samples=args.samples, window=args.window, noise_factor=args.noise_factor,
        control=not args.no_control, limit=args.limit, unfiltered=args.unfiltered, dtype=args.dtype,
        adapter_options=args.adapter_options,
    )
    summary = run_trace(config, out=args.out, device=args.device, retry_failed=args.retry_failed, compile=args.compile)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"{summary.run_dir}: {summary.traced} of {summary.items} items traced, {summary.failed} failed, "
              f"{summary.seconds:.1f} s on {summary.world_size} process(es), "
              f"{max(summary.per_rank_trace_seconds):.1f} s of it tracing, noise sigma {summary.noise_std:.4g}")
    return 0


def _check_model(args: argparse.Namespace) -> int:
    from known_speech.evaluation.adapter import adapter_class
    from known_speech.evaluation.check_model import EASY_FACTS, check_model
    from known_speech.evaluation.runner import default_adapter, load_records

    adapter_cls = adapter_class(args.adapter or default_adapter(args.model))
    text = {int(r["known_id"]): r for r in load_records("text", args.dataset)}
    speech = {}
    if "speech" in adapter_cls.modalities:
        if args.config:
            speech = {int(r["known_id"]): r for r in load_records("speech", args.dataset, args.config)}
        else:
            print("known-speech: note: no --config: the speech input is not checked", file=sys.stderr)
    known_id = args.known_id if args.known_id is not None else (min(speech) if speech else 21)
    for name, rows in (("text", text), ("speech", speech)):
        if rows and known_id not in rows:
            raise ValueError(f"--known-id {known_id}: not among the {name} records")
    adapter = adapter_cls(args.model, device=args.device, dtype=args.dtype, **args.adapter_options)
    records = {"text": text[known_id], **({"speech": speech[known_id]} if speech else {})}
    recall = {"text": [text[i] for i in EASY_FACTS],
              "speech": [speech[i] for i in EASY_FACTS if i in speech]}
    report = check_model(adapter, records, recall, reference_audio=args.reference_audio)
    print(f"check-model {args.model} (adapter {adapter.name}, {str(adapter.dtype).removeprefix('torch.')} on {args.device})")
    print(report.describe())
    failures = report.failures(strict=args.strict)
    if failures:
        print(f"known-speech: check-model failed: {', '.join(check.name for check in failures)}", file=sys.stderr)
        return 1
    print("all checks passed" + (" (warnings above)" if any(c.status == "warn" for c in report.checks) else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    from known_speech.evaluation.report import write_report

    report = write_report(args.runs, out_dir=args.out, per_item=args.per_item)
    print(f"wrote {report.out_dir / 'report.html'}, {report.out_dir / 'report.md'} and {len(report.figures)} figure(s)")
    return 0


def _show_alignment(args: argparse.Namespace) -> int:
    import datasets

    from known_speech.audio import waveform_of
    from known_speech.builders.align.plot import plot_alignment
    from known_speech.builders.writer import read_build_stats

    configs = sorted(read_build_stats(args.dataset))
    if not configs:
        raise ValueError(f"{args.dataset} holds no built voice; run `known-speech build` first")
    config = args.config or configs[0]
    rows = datasets.load_dataset(str(args.dataset), config, split="train").filter(
        lambda known_id: known_id == args.known_id, input_columns="known_id")
    if len(rows) == 0:
        raise ValueError(f"known_id={args.known_id} is not in config {config!r} of {args.dataset}")
    row = rows[0]
    out = args.out or f"alignment_{config}_{args.known_id}.png"
    print(f"wrote {plot_alignment(row, waveform_of(row['audio']), out)}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from huggingface_hub import get_token

    from known_speech.builders.publish import plan_publish, publish

    plan = plan_publish(args.dataset, args.repo, args.tag, private=args.private, allow_failed=args.allow_failed)
    if args.dry_run:
        print("dry run: nothing is uploaded\n" + plan.describe())
        print(f"token: {'found' if get_token() else 'not found (set HF_TOKEN or run `hf auth login`)'}")
        return 0
    print(f"published {plan.tag}: {publish(plan)}")
    return 0


def _tts_env(args: argparse.Namespace) -> int:
    from known_speech.builders.tts.subprocess_engine import DEFAULT_MELOTTS_ENV, create_melotts_env

    path = Path(args.path) if args.path else DEFAULT_MELOTTS_ENV
    create_melotts_env(path)
    print(f"MeloTTS environment ready at {path}; build with: known-speech build --engine melotts --voice EN-US")
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser, run: bool = True) -> None:
    """Model, adapter, data and device options; `run` adds those of a run over many items."""
    model_help = "model name or path (smollm2: the offline SmolLM2-135M-Instruct GGUF)"
    if run:
        parser.add_argument("--model", required=True, help=model_help)
    else:
        parser.add_argument("model", help=model_help)
    parser.add_argument("--adapter", default=None, help="adapter name (default: from the model name; see known_speech.adapters)")
    if run:
        parser.add_argument("--modality", choices=("text", "speech"), default="text", help="prompt modality (default: text)")
    parser.add_argument("--dataset", default=DEFAULT_OUTPUT_DIR, help=f"dataset repository folder (default: {DEFAULT_OUTPUT_DIR})")
    parser.add_argument("--config", default="", help="voice config for speech, e.g. piper-en_US-joe-medium")
    if run:
        parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="auto: bfloat16 on CUDA (as Spirit LM's own code), float32 on CPU (default: auto)")
    parser.add_argument("--adapter-option", dest="adapter_options", action="append", default=[], type=_key_value,
                        metavar="KEY=VALUE", help="adapter setting, recorded with the results "
                        "(qwen2-audio: text_suffix='Generate the caption in English:')")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="known-speech", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="synthesise, align and check the spoken Known set (resumable)")
    build.add_argument("--engine", default="piper",
                       help="TTS engine: piper, piper-subprocess, melotts, kokoro, espeak-ng, external (default: piper)")
    build.add_argument("--voice", default=DEFAULT_VOICE, help=f"voice name or .onnx path (default: {DEFAULT_VOICE})")
    build.add_argument("--limit", type=int, default=None, help="build only the first N records")
    build.add_argument("--out", default=DEFAULT_OUTPUT_DIR, help=f"dataset repository folder (default: {DEFAULT_OUTPUT_DIR})")
    build.add_argument("--source", default=None, help="a Known-format JSON file (default: the bundled known_1000.json)")
    build.add_argument("--asr-model", default=DEFAULT_ASR_MODEL, help=f"faster-whisper model (default: bundled {DEFAULT_ASR_MODEL})")
    build.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    build.add_argument("--retry-failed", action="store_true", help="rebuild items that failed before")
    build.add_argument("--aligner", action="append", choices=ALIGNERS, default=None,
                       help=f"alignments to record (repeatable; default: {' and '.join(DEFAULT_ALIGNERS)})")
    build.add_argument("--ctc-model", default=DEFAULT_CTC_MODEL,
                       help=f"CTC model for --aligner ctc, name or path (default: {DEFAULT_CTC_MODEL})")
    build.add_argument("--unit-tokenizer", default=None,
                       help="HubertModel folder with k-means centroids (e.g. mHuBERT-base 25 Hz): store units")
    build.set_defaults(handler=_build)

    show = commands.add_parser("show-alignment", help="PNG of an item's spectrogram with every alignment (paper Fig. 3)")
    show.add_argument("known_id", type=int)
    show.add_argument("--config", default=None, help="voice config (default: the first built)")
    show.add_argument("--dataset", default=DEFAULT_OUTPUT_DIR, help=f"dataset folder (default: {DEFAULT_OUTPUT_DIR})")
    show.add_argument("--out", default=None, help="output .png or .pdf (default: alignment_<config>_<id>.png)")
    show.set_defaults(handler=_show_alignment)

    publish = commands.add_parser("publish", help="upload the dataset folder to the Hub as one commit plus a tag")
    publish.add_argument("--repo", required=True, help="ORG/NAME of the Hub dataset")
    publish.add_argument("--tag", required=True, help="version tag, e.g. v1.0.0 (never reused)")
    publish.add_argument("--dataset", default=DEFAULT_OUTPUT_DIR, help=f"dataset folder (default: {DEFAULT_OUTPUT_DIR})")
    publish.add_argument("--private", action="store_true", help="create the repository as private")
    publish.add_argument("--allow-failed", action="store_true", help="publish even if some items failed")
    publish.add_argument("--dry-run", action="store_true", help="print the files and the tag; upload nothing")
    publish.set_defaults(handler=_publish)

    tts_env = commands.add_parser("tts-env", help="create the own environment of a TTS engine (melotts)")
    tts_env.add_argument("engine", choices=("melotts",))
    tts_env.add_argument("--path", default=None, help="where (default: ~/.cache/known-speech/melotts-venv)")
    tts_env.set_defaults(handler=_tts_env)

    filter_ = commands.add_parser("filter", help="which facts a model recalls (Known-t2t / Known-s2t), resumable")
    _add_model_arguments(filter_)
    filter_.add_argument("--max-new-tokens", type=int, default=12, help="greedy tokens generated (default: 12)")
    filter_.set_defaults(handler=_filter)

    trace = commands.add_parser("trace", help="causal tracing over the recalled facts, resumable; runs under torchrun")
    _add_model_arguments(trace)
    trace.add_argument("--kinds", default="hidden,mlp,attn", help="comma-separated: hidden,mlp,attn (default: all)")
    trace.add_argument("--samples", type=int, default=10, help="noise samples (default: 10)")
    trace.add_argument("--window", type=int, default=10, help="layers restored around l for mlp/attn (default: 10)")
    trace.add_argument("--noise-factor", type=float, default=3.0, help="sigma = factor x subject embedding std (default: 3)")
    trace.add_argument("--no-control", action="store_true", help="skip the control-span traces")
    trace.add_argument("--unfiltered", action="store_true", help="trace every record, not only the recalled ones")
    trace.add_argument("--retry-failed", action="store_true", help="trace items that failed before again")
    trace.add_argument("--compile", action="store_true",
                       help="compile the model's sublayers with torch.compile: ~1.4x faster on GPU after a one-off "
                            "compilation of ~30 s; off by default")
    trace.add_argument("--out", default="results", help="results folder (default: results)")
    trace.set_defaults(handler=_trace)

    check = commands.add_parser("check-model", help="confirm on real weights that the inputs are the model's own "
                                "(BOS, marker tokens, answer token, units, recall, restoration); run once before tracing")
    _add_model_arguments(check, run=False)
    check.add_argument("--known-id", type=int, default=None, help="the record whose input is shown (default: the "
                       "first of the voice config, or 21)")
    check.add_argument("--reference-audio", default=None,
                       help="Meta's examples/audio/7143-88743-0029.flac, to compare our units with Meta's 228")
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.set_defaults(handler=_check_model)

    report = commands.add_parser("report", help="AIE heatmaps, T→T vs S→T, intervals: report.html and report.md")
    report.add_argument("runs", nargs="+", help="trace run folders, or folders holding them")
    report.add_argument("--out", default=None, help="report folder (default: <results>/report)")
    report.add_argument("--per-item", type=int, default=0, help="also plot the first N items of each run")
    report.set_defaults(handler=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "adapter_options"):
        args.adapter_options = dict(args.adapter_options)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except ValueError as err:  # our errors name the record, field or argument
        print(f"known-speech: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
