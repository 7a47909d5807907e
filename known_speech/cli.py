"""The `known-speech` command line. Thin: parse, call the library, report."""

from __future__ import annotations

import argparse
import logging
import sys

from .settings import DEFAULT_ASR_MODEL, DEFAULT_OUTPUT_DIR, DEFAULT_VOICE

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
    )
    summary = result.summary
    print(summary.describe())
    for failure in summary.failures:
        print(f"  failed known_id={failure['known_id']} at {failure['stage']}: {failure['reason']}")
    print(f"load it with: datasets.load_dataset({args.out!r}, {result.config_name!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="known-speech", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="synthesise, align and check the spoken Known set (resumable)")
    build.add_argument("--engine", default="piper", help="TTS engine (default: piper)")
    build.add_argument("--voice", default=DEFAULT_VOICE, help=f"voice name or .onnx path (default: {DEFAULT_VOICE})")
    build.add_argument("--limit", type=int, default=None, help="build only the first N records")
    build.add_argument("--out", default=DEFAULT_OUTPUT_DIR, help=f"dataset repository folder (default: {DEFAULT_OUTPUT_DIR})")
    build.add_argument("--source", default=None, help="a Known-format JSON file (default: the bundled known_1000.json)")
    build.add_argument("--asr-model", default=DEFAULT_ASR_MODEL, help=f"faster-whisper model (default: bundled {DEFAULT_ASR_MODEL})")
    build.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    build.add_argument("--retry-failed", action="store_true", help="rebuild items that failed before")
    build.set_defaults(handler=_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except ValueError as err:  # our errors name the record, field or argument
        print(f"known-speech: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
