"""python -m known_speech.tracing: trace one text prompt, write the result (.npz) and heatmaps."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .engine import CausalTracer
from .kernels import KERNELS, check_kernels
from .loading import load_causal_lm
from .plot import plot_trace
from .prompts import trace_text_prompt
from .result import KINDS, TraceOptions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m known_speech.tracing", description=__doc__)
    parser.add_argument("--model", default="smollm2", help="HF name, local path, .gguf, or 'smollm2' (offline)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--subject", required=True, help="substring of the prompt to corrupt")
    parser.add_argument("--answer", default=None, help="expected answer; default: the model's top prediction")
    parser.add_argument("--kind", action="append", choices=KINDS, help="repeatable; default: all three")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--noise-factor", type=float, default=3.0)
    parser.add_argument("--noise-std", type=float, default=None, help="explicit sigma (overrides the factor)")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the sublayers (worth it on GPU)")
    parser.add_argument("--kernels", choices=KERNELS, default="torch",
                        help="liger: Liger Kernel's fused norms, rotary embedding and SwiGLU (CUDA)")
    parser.add_argument("--out", default="results/trace", help="output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    check_kernels(args.kernels, args.device, args.compile)
    model, tokenizer = load_causal_lm(args.model, args.dtype, args.device)
    options = TraceOptions(
        kinds=tuple(args.kind or KINDS), samples=args.samples, noise_factor=args.noise_factor,
        noise_std=args.noise_std, window=args.window,
    )
    tracer = CausalTracer(model, model_name=args.model, compile=args.compile, kernels=args.kernels)
    result = trace_text_prompt(tracer, tokenizer, args.prompt, args.subject, args.answer, options)
    out = Path(args.out)
    result.save(out / "trace.npz")
    plot_trace(result, out / "trace.png")
    plot_trace(result, out / "trace.pdf")
    logging.getLogger("known_speech.tracing").info(
        "answer %r: clean %.4f, corrupted %.4f, %.1f s", result.answer, result.high_score, result.low_score, result.seconds
    )
    for kind in result.scores:
        position, layer, score = result.peak(kind)
        print(f"{kind}: peak {score:.4f} at token {position} {result.tokens[position]!r}, layer {layer}")
    print(f"wrote {out / 'trace.npz'}, {out / 'trace.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
