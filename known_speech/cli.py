"""The `known-speech` command line: arguments, validated before any model loads; `commands` runs them."""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

from . import commands
from .cli_organisms import add_organism_commands
from .cli_types import defaults as option_defaults
from .cli_types import key_value, kinds, non_negative_int, positive_float, positive_int
from .progress import configure_progress
from .settings import ALIGNERS, DEFAULT_OUTPUT_DIR

__all__ = ["main", "build_parser"]

DESCRIPTION = (
    "The Known factual-recall prompts as speech, and causal tracing of speech language models: build the spoken "
    "dataset with any TTS voice, find the facts a model recalls from text and from speech, trace where it recalls "
    "them (hidden / MLP / attention), report AIE by token position, and publish the dataset to the Hub."
)


MODEL_HELP = "model name or path (smollm2: the offline SmolLM2-135M-Instruct GGUF)"


def _add_model_arguments(parser: argparse.ArgumentParser, run: bool = True) -> None:
    """Model, adapter, data and device options; `run` adds those of a run over many items."""
    if run:
        parser.add_argument("--model", required=True, help=MODEL_HELP)
    else:
        parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--adapter", default=None, help="adapter name (default: from the model name; see known_speech.adapters)")
    if run:
        parser.add_argument("--modality", choices=("text", "speech"), default="text", help="prompt modality (default: text)")
    parser.add_argument("--dataset", default=DEFAULT_OUTPUT_DIR, help=f"dataset repository folder (default: {DEFAULT_OUTPUT_DIR})")
    parser.add_argument("--voice-config", "--config", dest="voice_config", default="",
                        help="the voice config of the dataset for speech, e.g. piper-en_US-joe-medium")
    if run:
        parser.add_argument("--limit", type=positive_int, default=None, help="only the first N items")
    _add_device_arguments(parser)
    parser.add_argument("--adapter-option", dest="adapter_options", action="append", default=[], type=key_value,
                        metavar="KEY=VALUE", help="adapter setting, recorded with the results "
                        "(qwen2-audio: text_suffix='Generate the caption in English:'; the chat-format audio LMs: "
                        "instruction='...')")


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="auto: bfloat16 on CUDA (as Spirit LM's own code), float32 on CPU (default: auto)")


def _add_trace_options(parser: argparse.ArgumentParser) -> None:
    """What a trace restores and scores, and how the engine runs: `trace` and `trace-prompt` alike."""
    from known_speech.tracing.kernels import KERNELS
    from known_speech.tracing.metric import METRICS
    from known_speech.tracing.result import TraceOptions

    defaults = option_defaults(TraceOptions)
    parser.add_argument("--kinds", type=kinds, default=defaults["kinds"],
                        help=f"comma-separated, of {','.join(defaults['kinds'])} (default: all)")
    parser.add_argument("--samples", type=positive_int, default=defaults["samples"],
                        help=f"noise samples (default: {defaults['samples']})")
    parser.add_argument("--window", type=positive_int, default=defaults["window"],
                        help=f"layers restored around l for mlp/attn (default: {defaults['window']})")
    parser.add_argument("--noise-factor", type=positive_float, default=defaults["noise_factor"],
                        help=f"sigma = factor x subject embedding std (default: {defaults['noise_factor']:g})")
    parser.add_argument("--metric", choices=METRICS, default=defaults["metric"],
                        help="what is traced: prob = P(first answer token) (ROME's, default), logprob = its log, "
                             "attribute = log P(whole attribute), teacher-forced")
    parser.add_argument("--compile", action="store_true",
                        help="compile the model's sublayers with torch.compile: ~1.4x faster on GPU after a one-off "
                             "compilation of ~30 s; off by default")
    parser.add_argument("--kernels", choices=KERNELS, default="torch",
                        help="liger: Liger Kernel's fused RMSNorm, rotary embedding and SwiGLU (CUDA; "
                             "pip install 'known-speech[gpu]'): ~1.3x faster eager tracing; default: torch")


def _output_options(default) -> argparse.ArgumentParser:
    """-v and --progress, accepted before the subcommand and after it: a subcommand's copy leaves the value
    given before it alone (default SUPPRESS) unless it is given there."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-v", "--verbose", action="store_true", default=default,
                         help="log at INFO level, and show the traceback of an error")
    options.add_argument("--progress", action="store_true", default=default,
                         help="show progress bars even where the output is not a terminal (a log file, CI)")
    return options


def build_parser() -> argparse.ArgumentParser:
    from known_speech.builders.options import BuildOptions
    from known_speech.evaluation.subject_probes import DEFAULT_COUNTERFACTUALS, DEFAULT_PROBE_SEED

    build_defaults = option_defaults(BuildOptions)
    parser = argparse.ArgumentParser(prog="known-speech", description=DESCRIPTION, parents=[_output_options(False)])
    subcommands = parser.add_subparsers(dest="command", required=True)
    command = partial(subcommands.add_parser, parents=[_output_options(argparse.SUPPRESS)])

    build = command("build", help="synthesise, align and check the spoken Known set (resumable)")
    build.add_argument("--engine", default=build_defaults["engine"],
                       help="TTS engine: piper, piper-subprocess, melotts, kokoro, espeak-ng, external (default: piper)")
    build.add_argument("--voice", default=build_defaults["voice"],
                       help=f"voice name or .onnx path (default: {build_defaults['voice']})")
    build.add_argument("--limit", type=positive_int, default=build_defaults["limit"], help="build only the first N records")
    build.add_argument("--out", default=DEFAULT_OUTPUT_DIR, help=f"dataset repository folder (default: {DEFAULT_OUTPUT_DIR})")
    build.add_argument("--source", default=build_defaults["source"],
                       help="a Known-format JSON file (default: the bundled known_1000.json)")
    build.add_argument("--asr-model", default=build_defaults["asr_model"],
                       help=f"faster-whisper model (default: bundled {build_defaults['asr_model']})")
    build.add_argument("--workers", type=positive_int, default=build_defaults["workers"],
                       help=f"processes (default: {build_defaults['workers']})")
    build.add_argument("--retry-failed", action="store_true", help="rebuild items that failed before")
    build.add_argument("--prune", action="store_true",
                       help="let a smaller --limit than the folder's voice config holds drop the other items")
    build.add_argument("--aligner", dest="aligners", action="append", choices=ALIGNERS, default=None,
                       help=f"alignments to record (repeatable; default: {' and '.join(build_defaults['aligners'])})")
    build.add_argument("--ctc-model", default=build_defaults["ctc_model"],
                       help=f"CTC model for --aligner ctc, name or path (default: {build_defaults['ctc_model']})")
    build.add_argument("--max-words", type=positive_int, default=build_defaults["max_words"],
                       help=f"an item with more spoken words fails before synthesis (default: {build_defaults['max_words']})")
    build.add_argument("--item-memory-gb", type=positive_float, default=build_defaults["item_memory_gb"],
                       help="data memory each worker process may use; an item needing more fails "
                            f"(default: {build_defaults['item_memory_gb']:g})")
    build.add_argument("--unit-tokenizer", default=None,
                       help="Spirit LM's speech_tokenizer/hubert_25hz folder (or checkpoints root), or a HubertModel "
                            "folder with its quantizer or k-means centroids: store units with their provenance")
    build.set_defaults(handler=commands.build)

    show = command("show-alignment", help="PNG of an item's spectrogram with every alignment (paper Fig. 3)")
    show.add_argument("known_id", type=int, help="the Known record to show, e.g. 65 (its known_id)")
    show.add_argument("--voice-config", "--config", dest="voice_config", default=None,
                      help="voice config (default: the first built)")
    show.add_argument("--dataset", default=DEFAULT_OUTPUT_DIR, help=f"dataset folder (default: {DEFAULT_OUTPUT_DIR})")
    show.add_argument("--out", default=None, help="output .png or .pdf (default: alignment_<config>_<id>.png)")
    show.set_defaults(handler=commands.show_alignment)

    publish = command("publish", help="upload the dataset folder to the Hub as one commit plus a tag")
    publish.add_argument("--repo", required=True, help="ORG/NAME of the Hub dataset")
    publish.add_argument("--tag", required=True, help="version tag, e.g. v1.0.0 (never reused)")
    publish.add_argument("--dataset", default=DEFAULT_OUTPUT_DIR, help=f"dataset folder (default: {DEFAULT_OUTPUT_DIR})")
    publish.add_argument("--private", action="store_true", help="create the repository as private")
    publish.add_argument("--allow-failed", action="store_true", help="publish even if some items failed")
    publish.add_argument("--dry-run", action="store_true", help="print the files and the tag; upload nothing")
    publish.add_argument("--endpoint", default=None, help="Hub endpoint (default: huggingface_hub's, e.g. HF_ENDPOINT)")
    publish.set_defaults(handler=commands.publish)

    tts_env = command("tts-env", help="create the own environment of a TTS engine (melotts)")
    tts_env.add_argument("engine", choices=("melotts",), help="the engine whose environment to create: melotts")
    tts_env.add_argument("--path", default=None, help="where (default: ~/.cache/known-speech/melotts-venv)")
    tts_env.set_defaults(handler=commands.tts_env)

    filter_ = command("filter", help="which facts a model recalls (Known-t2t / Known-s2t), resumable")
    _add_model_arguments(filter_)
    filter_.add_argument("--max-new-tokens", type=positive_int, default=12, help="greedy tokens generated (default: 12)")
    filter_.add_argument("--batch-size", type=positive_int, default=None,
                         help="prompts per generate call (default: as many as fit the GPU's free memory, 8 on CPU)")
    filter_.add_argument("--subject-swap", action="store_true",
                         help="speech: generate every fact recalled from speech again with another prompt's subject "
                              "units in the subject's place (same relation, other answer), to tell recall that follows "
                              "the subject from the spoken template's prior (columns swapped_*; unit-based adapters)")
    filter_.add_argument("--no-probes", dest="probes", action="store_false",
                         help="do not ask the recalled facts again with made-up names and counterfactual subjects "
                              "(then the subject_dependent and follows_subject flags and the _subject views stay empty)")
    filter_.add_argument("--counterfactuals", type=positive_int, default=DEFAULT_COUNTERFACTUALS,
                         help="other Known subjects of the relation asked per recalled fact "
                              f"(default: {DEFAULT_COUNTERFACTUALS})")
    filter_.add_argument("--probe-seed", type=non_negative_int, default=DEFAULT_PROBE_SEED,
                         help=f"the seed of the counterfactual subjects' draw (default: {DEFAULT_PROBE_SEED})")
    filter_.set_defaults(handler=commands.filter_)

    trace = command("trace", help="causal tracing over the recalled facts, resumable; runs under torchrun")
    _add_model_arguments(trace)
    _add_trace_options(trace)
    trace.add_argument("--no-control", action="store_true", help="skip the control-span traces")
    trace.add_argument("--unfiltered", action="store_true", help="trace every record, not only the recalled ones")
    trace.add_argument("--recalled-in", choices=("text", "speech", "both"), default=None,
                       help="select the records by the model's recall filter of this modality (e.g. trace speech "
                            "inputs of the facts recalled from text), or by both (Known-both: the prompts that a "
                            "paired S→T − T→T comparison shares; sigma stays the traced modality's own); default: "
                            "the traced modality's")
    trace.add_argument("--known-id", dest="known_ids", type=int, nargs="+", default=(), metavar="ID",
                       help="trace only these prompts (their known_id) of the selection; sigma stays the whole "
                            "selection's")
    trace.add_argument("--subject-dependent", action="store_true",
                       help="trace only the facts whose recall rests on the subject (recalled, and not from made-up "
                            "names: the known_*_subject views); the run folder's name ends in -subject")
    trace.add_argument("--retry-failed", action="store_true", help="trace items that failed before again")
    trace.add_argument("--out", default="results", help="results folder (default: results)")
    trace.set_defaults(handler=commands.trace)

    one = command("trace-prompt", help="causal trace of one text prompt of any causal LM (the API's trace_prompt): "
                  "the result (.npz) and heatmaps")
    one.add_argument("--model", required=True, help=MODEL_HELP)
    one.add_argument("--prompt", required=True, help="the text prompt, e.g. 'The capital of Italy is'")
    one.add_argument("--subject", required=True, help="the words of the prompt to corrupt, e.g. Italy")
    one.add_argument("--subject-occurrence", type=non_negative_int, default=None,
                     help="which occurrence of a subject that occurs more than once (0: the first, the default)")
    one.add_argument("--answer", default=None, help="the expected answer (default: the model's top prediction)")
    _add_trace_options(one)
    one.add_argument("--noise-std", type=positive_float, default=None,
                     help="sigma itself, instead of --noise-factor x the subject embeddings' std")
    _add_device_arguments(one)
    one.add_argument("--out", default="results/trace", help="output folder (default: results/trace)")
    one.set_defaults(handler=commands.trace_prompt)

    check = command("check-model", help="confirm on real weights that the inputs are the model's own "
                                "(BOS, marker tokens, answer token, units, recall, restoration); run once before tracing")
    _add_model_arguments(check, run=False)
    check.add_argument("--known-id", type=int, default=None, help="the record whose input is shown (default: the "
                       "first of the voice config, or 21)")
    check.add_argument("--reference-audio", default=None,
                       help="Meta's examples/audio/7143-88743-0029.flac, to compare our units with Meta's 228")
    check.add_argument("--strict", action="store_true", help="fail on warnings too")
    check.set_defaults(handler=commands.check_model)

    add_organism_commands(command, build_defaults["voice"])

    report = command("report", help="AIE heatmaps, T→T vs S→T, intervals: report.html and report.md")
    report.add_argument("runs", nargs="+", help="trace run folders, or folders holding them")
    report.add_argument("--out", default=None, help="report folder (default: <results>/report)")
    report.add_argument("--per-item", type=non_negative_int, default=0, help="also plot the first N items of each run")
    report.set_defaults(handler=commands.report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "adapter_options"):
        args.adapter_options = dict(args.adapter_options)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_progress(force=args.progress)
    logging.getLogger("known_speech.progress").setLevel(logging.INFO)  # where there is no bar: a line every 30 s
    if not args.verbose:  # the Hub client's retry warnings: the error that ends them is reported below
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        if args.verbose:
            raise
        where = next((f" in {value}" for name in ("out", "dataset", "run") if (value := getattr(args, name, None))), "")
        print(f"known-speech: interrupted: {args.command} stopped; what it finished is kept{where}, and the same "
              "command resumes from there", file=sys.stderr)
        return 130
    except (ValueError, ImportError, OSError) as err:  # ours name the record, field or argument and the fix
        if args.verbose:
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"known-speech: error: {message} (run with -v for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
