"""What each `known-speech` subcommand does with its parsed arguments: call the library, report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
__all__ = ["build", "filter_", "trace", "trace_prompt", "check_model", "report", "show_alignment", "publish", "tts_env"]


def build(args: argparse.Namespace) -> int:
    from known_speech.builders.build import build_dataset

    options = {name: getattr(args, name) for name in ("engine", "voice", "asr_model", "source", "limit", "workers",
                                                       "retry_failed", "ctc_model", "unit_tokenizer", "max_words",
                                                       "item_memory_gb", "prune")}
    result = build_dataset(args.out, **options, **({"aligners": tuple(args.aligners)} if args.aligners else {}))
    summary = result.summary
    print(summary.describe())
    for failure in summary.failures:
        print(f"  failed known_id={failure.known_id} at {failure.stage}: {failure.reason}")
    if summary.failed == summary.items:
        print(f"known-speech: error: no item of {result.voice_config} was built (reasons above, and in "
              f"{args.out}/build_stats.json)", file=sys.stderr)
        return 1
    print(f"load it with: datasets.load_dataset({args.out!r}, {result.voice_config!r})")
    return 0


def filter_(args: argparse.Namespace) -> int:
    from known_speech.builders.writer import render_card
    from known_speech.evaluation.adapter import adapter_class, adapter_for
    from known_speech.evaluation.filtering import run_filter
    from known_speech.evaluation.recall_summary import recall_figures
    from known_speech.evaluation.records import load_records, own_source_sha256
    from known_speech.evaluation.relation_prior import relation_prior
    from known_speech.evaluation.views import write_filter_views
    from known_speech.layout import DatasetFolder, model_slug

    folder = DatasetFolder(args.dataset)
    adapter_cls = adapter_class(args.adapter or adapter_for(args.model))
    if args.subject_swap:
        from known_speech.evaluation.subject_swap import check_swappable

        check_swappable(adapter_cls, args.modality)
    records = load_records(args.modality, args.dataset, args.voice_config)[: args.limit]
    pool = load_records("text", args.dataset)  # the whole source: counterfactual subjects and the relation prior
    adapter_cls.check_modality(args.modality)
    path = folder.filter_file(args.model, args.modality, args.voice_config)
    with folder.writing(f"filter {args.model} {args.modality}"):
        adapter = adapter_cls(args.model, device=args.device, dtype=args.dtype, **args.adapter_options)
        rows = run_filter(adapter, records, args.modality, path, voice_config=args.voice_config,
                          max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, subject_swap=args.subject_swap,
                          source_sha256=own_source_sha256(args.dataset),
                          build_items_sha256=folder.items_sha256(args.voice_config) if args.modality == "speech" else None)
        if args.probes:
            rows = _probe(args, adapter, rows, records, pool, path)
        write_filter_views(args.dataset, args.model)
        card = render_card(args.dataset)
    counts = {match: sum(row.match == match for row in rows.values()) for match in ("exact", "partial", "none")}
    errors = sum(bool(row.error) for row in rows.values())
    print(f"{args.model} ({args.modality}): {len(rows)} items, exact {counts['exact']}, partial {counts['partial']}, "
          f"none {counts['none']} ({errors} could not be run)")
    label = "S→T" if args.modality == "speech" else "T→T"
    for figures in recall_figures(rows, relation_prior(pool)):
        if figures.asked:
            print(figures.describe(f"{args.model} {label}"))
    swapped = [row for row in rows.values() if row.swapped_with >= 0]
    if swapped:
        print(f"subject swap: of {len(swapped)} recalled from speech, {sum(r.swapped_match == 'none' for r in swapped)} "
              f"lose the answer with another subject's units, {sum(r.swapped_match != 'none' for r in swapped)} keep it "
              f"(the spoken template)")
    listed = {info["config_name"]: info["splits"][0]["num_examples"] for info in card.data.dataset_info}
    configs = [name for name in folder.model_configs(args.model) if name in listed]
    if configs:
        print(f"configs of {args.dataset}: " + ", ".join(f"{name} ({listed[name]} rows)" for name in configs))
        own = f"{'known_s2t' if args.modality == 'speech' else 'known_t2t'}-{model_slug(args.model)}"  # this modality's view
        example = own if own in configs else configs[-1]
        print(f"load one with: datasets.load_dataset({str(args.dataset)!r}, {example!r}, split='train')")
    return 0


def _probe(args: argparse.Namespace, adapter, rows: dict, records: list[dict], pool: list[dict], path: Path) -> dict:
    """The recalled facts asked again with made-up names and counterfactual subjects (spoken in the voice config's
    voice for speech), and their rows flagged."""
    from functools import partial

    from known_speech.evaluation.subject_dependence import probe_filter

    speak = None
    if args.modality == "speech":
        from known_speech.builders.probes import speak_probes

        speak = partial(speak_probes, args.dataset, args.voice_config)
    return probe_filter(adapter, rows, records, pool, args.modality, path, speak, voice_config=args.voice_config,
                        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                        counterfactuals=args.counterfactuals, seed=args.probe_seed)


def trace(args: argparse.Namespace) -> int:
    from known_speech.evaluation.run_config import TraceRunConfig
    from known_speech.evaluation.trace_run import run_trace
    from known_speech.layout import DatasetFolder
    from known_speech.tracing import TraceOptions

    if args.modality == "speech" or args.recalled_in in ("speech", "both"):  # before the run's settings ask for one
        DatasetFolder(args.dataset).check_voice_config(args.voice_config)

    config = TraceRunConfig(
        model=args.model, modality=args.modality, adapter=args.adapter or "", dataset=args.dataset,
        voice_config=args.voice_config, control=not args.no_control, limit=args.limit, known_ids=tuple(args.known_ids),
        unfiltered=args.unfiltered,
        recalled_in=args.recalled_in, subject_dependent=args.subject_dependent,
        dtype=args.dtype, adapter_options=args.adapter_options,
        trace=TraceOptions(kinds=args.kinds, samples=args.samples, window=args.window,
                           noise_factor=args.noise_factor, metric=args.metric),
    )
    summary = run_trace(config, out=args.out, device=args.device, retry_failed=args.retry_failed, compile=args.compile,
                        kernels=args.kernels)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"{summary.run_dir}: {summary.traced} of {summary.items} items traced, {summary.failed} failed, "
              f"{summary.seconds:.1f} s on {summary.world_size} process(es), "
              f"{max(summary.per_rank_trace_seconds):.1f} s of it tracing, noise sigma {summary.noise_std:.4g}")
    return 0


def trace_prompt(args: argparse.Namespace) -> int:
    from known_speech.api import trace_prompt

    result = trace_prompt(args.model, args.prompt, args.subject, args.answer, kinds=args.kinds, samples=args.samples,
                          noise_factor=args.noise_factor, noise_std=args.noise_std, window=args.window,
                          metric=args.metric, device=args.device, dtype=args.dtype, compile=args.compile,
                          kernels=args.kernels, subject_occurrence=args.subject_occurrence)
    out = Path(args.out)
    written = [result.save(out / "trace.npz"), result.plot(out / "trace.png"), result.plot(out / "trace.pdf")]
    print(f"answer {result.answer!r}: clean {result.high_score:.4f}, corrupted {result.low_score:.4f} "
          f"(noise sigma {result.noise_std:.3g}), {result.seconds:.1f} s")
    for kind in result.scores:
        position, layer, score = result.peak(kind)
        print(f"{kind}: peak {score:.4f} at token {position} {result.tokens[position]!r}, layer {layer}")
    print(f"wrote {', '.join(map(str, written))}")
    return 0


def check_model(args: argparse.Namespace) -> int:
    from known_speech.evaluation.adapter import adapter_class, adapter_for
    from known_speech.evaluation.check_model import EASY_FACTS, check_model
    from known_speech.evaluation.records import load_records

    adapter_cls = adapter_class(args.adapter or adapter_for(args.model))
    text = {int(r["known_id"]): r for r in load_records("text", args.dataset)}
    speech, not_run = {}, ""  # why the speech checks do not run: a warning, so --strict fails
    if "speech" not in adapter_cls.modalities:
        if args.voice_config:
            not_run = f"adapter {adapter_cls.name} reads text only; --config {args.voice_config} is not used"
    else:
        try:
            speech = {int(r["known_id"]): r for r in load_records("speech", args.dataset, args.voice_config)}
        except ValueError as err:  # no --config, or one not built
            not_run = str(err)
    known_id = args.known_id if args.known_id is not None else (min(speech) if speech else 21)
    for name, rows in (("text", text), ("speech", speech)):
        if rows and known_id not in rows:
            raise ValueError(f"--known-id {known_id}: not among the {name} records")
    adapter = adapter_cls(args.model, device=args.device, dtype=args.dtype, **args.adapter_options)
    records = {"text": text[known_id], **({"speech": speech[known_id]} if speech else {})}
    # Known's easy facts, where the dataset's source holds them; else its first facts (your own source)
    easy = [i for i in EASY_FACTS if i in text] or sorted(text)[:len(EASY_FACTS)]
    recall = {"text": [text[i] for i in easy], "speech": [speech[i] for i in easy if i in speech]}
    report = check_model(adapter, records, recall, reference_audio=args.reference_audio)
    if not_run:
        report.add("speech", "warn", f"not run: {not_run}")
    print(f"check-model {args.model} (adapter {adapter.name}, {str(adapter.dtype).removeprefix('torch.')} on {args.device})")
    print(report.describe())
    failures = report.failures(strict=args.strict)
    if failures:
        print(f"known-speech: check-model failed: {', '.join(check.name for check in failures)}", file=sys.stderr)
        return 1
    print("all checks passed" + (" (warnings above)" if any(c.status == "warn" for c in report.checks) else ""))
    return 0


def report(args: argparse.Namespace) -> int:
    from known_speech.evaluation.report import write_report

    report = write_report(args.runs, out_dir=args.out, per_item=args.per_item)
    print(f"wrote {report.out_dir / 'report.html'}, {report.out_dir / 'report.md'} and {len(report.figures)} figure(s)")
    return 0


def show_alignment(args: argparse.Namespace) -> int:
    import datasets

    from known_speech.audio import waveform_of
    from known_speech.builders.align.plot import plot_alignment
    from known_speech.layout import DatasetFolder

    folder = DatasetFolder(args.dataset)
    config = args.voice_config or next(iter(folder.voice_configs()), "")
    folder.check_voice_config(config)
    rows = datasets.load_dataset(str(args.dataset), config, split="train").filter(
        lambda known_id: known_id == args.known_id, input_columns="known_id")
    if len(rows) == 0:
        raise ValueError(f"known_id={args.known_id} is not in config {config!r} of {args.dataset}")
    row = rows[0]
    out = args.out or f"alignment_{config}_{args.known_id}.png"
    print(f"wrote {plot_alignment(row, waveform_of(row['audio']), out)}")
    return 0


def publish(args: argparse.Namespace) -> int:
    from huggingface_hub import get_token

    from known_speech.builders.publish import plan_publish, publish

    plan = plan_publish(args.dataset, args.repo, args.tag, private=args.private, allow_failed=args.allow_failed)
    if args.dry_run:
        print("dry run: nothing is uploaded\n" + plan.describe())
        print(f"token: {'found' if get_token() else 'not found (set HF_TOKEN or run `hf auth login`)'}")
        return 0
    print("uploading\n" + plan.describe())
    print(f"published {plan.tag}: {publish(plan, endpoint=args.endpoint)}")
    return 0


def tts_env(args: argparse.Namespace) -> int:
    from known_speech.builders.tts.subprocess_engine import DEFAULT_MELOTTS_ENV, create_melotts_env

    path = Path(args.path) if args.path else DEFAULT_MELOTTS_ENV
    create_melotts_env(path)
    print(f"MeloTTS environment ready at {path}; build with: known-speech build --engine melotts --voice EN-US")
    return 0
