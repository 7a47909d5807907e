"""Time the fast causal-tracing engine against the reference loop (ROME's algorithm), side by side.

    python benchmarks/trace_speed.py --model smollm2                       # CPU, 10-token Known prompt
    python benchmarks/trace_speed.py --model llama2-7b-random --device cuda --dtype bfloat16 \
        --tokens 12 48 --fast-only-tokens 128

For each prompt length: seconds per prompt of both, their ratio, the largest score difference, the
arithmetic floor (FLOPs the engine must do / the measured matmul rate of this device), and peak GPU
memory. The last line is `speedup=...` (fast vs reference, per prompt length).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import platform
import time

import torch

from known_speech.tracing import CausalTracer, TraceOptions
from known_speech.tracing.kernels import KERNELS
from known_speech.tracing.restoration import window_layers
from known_speech.tracing.reference import reference_trace

LLAMA2_7B_SHAPE = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_rate(device: str, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a large matrix product on this device and dtype."""
    size = 8192 if device.startswith("cuda") else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    repeats = 20 if device.startswith("cuda") else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def engine_flops(model, length: int, options: TraceOptions, subject_start: int) -> float:
    """FLOPs of the restorations the engine must compute: rows x positions x layers, plus attention.
    Positions before the subject need none (their restored state is the corrupted one), and in the
    last layer only the last position needs its MLP."""
    from known_speech.tracing.architectures import spec_for

    spec = spec_for(model)
    layers = spec.layer_list(model)
    num_layers = len(layers)
    attention_params = sum(p.numel() for p in layers[0].get_submodule(spec.attn).parameters())
    mlp_params = sum(p.numel() for p in layers[0].get_submodule(spec.mlp).parameters())
    hidden = model.config.hidden_size
    total = 0.0
    positions = [p for p in (options.token_range or range(length)) if p >= subject_start]
    for kind in options.kinds:
        for position in positions:
            query = length - position
            attention = 4 * hidden * query * length  # QK^T and AV over the full key length
            for layer in range(num_layers):
                start = layer + 1 if kind == "hidden" else window_layers(layer, options.window, num_layers).start
                for computed in range(start, num_layers):
                    mlp_positions = 1 if computed == num_layers - 1 else query
                    total += options.samples * (2 * attention_params * query + 2 * mlp_params * mlp_positions + attention)
    return total


def profiled(device: str):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    return profile(activities=activities, record_shapes=True)


def build_model(name: str, device: str, dtype: torch.dtype, layers: int | None = None):
    if name == "llama2-7b-random":
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(**{**LLAMA2_7B_SHAPE, **({"num_hidden_layers": layers} if layers else {})})
        with torch.device(device):
            default = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                model = LlamaForCausalLM(config).eval()
            finally:
                torch.set_default_dtype(default)
        return model, None
    from known_speech.loading import load_causal_lm

    return load_causal_lm(name, dtype, device)


def known_prompt(tokenizer, tokens: int):
    """The first Known record whose prompt is `tokens` tokens long: (ids, subject range, answer id)."""
    from known_speech.source import load_known
    from known_speech.tracing.prompts import answer_token, encode, subject_token_range

    for record in load_known():
        encoding = encode(tokenizer, record.prompt)
        if len(encoding) == tokens:
            return (torch.tensor(encoding.ids), subject_token_range(encoding, *record.subject_char_span),
                    answer_token(tokenizer, record.prompt, record.attribute).id, record.prompt)
    raise SystemExit(f"no Known prompt has {tokens} tokens")


def random_prompt(model, tokens: int, device: str):
    generator = torch.Generator().manual_seed(tokens)
    ids = torch.randint(3, model.config.vocab_size, (tokens,), generator=generator)
    subject = (1, 1 + max(2, tokens // 3))  # a 48-token speech prompt has a ~16-unit subject
    with torch.no_grad():
        answer = int(model(input_ids=ids[None].to(device)).logits[0, -1].argmax())
    return ids, subject, answer, f"random ids, subject positions {subject}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--tokens", type=int, nargs="*", default=[10], help="prompt lengths timed against the reference")
    parser.add_argument("--fast-only-tokens", type=int, nargs="*", default=[], help="lengths run by the engine alone")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--layers", type=int, default=None,
                        help="llama2-7b-random with fewer layers (a float32 reference loop of all 32 takes minutes)")
    parser.add_argument("--compile", action="store_true", help="the engine's inductor-compiled sublayers")
    parser.add_argument("--profile", action="store_true",
                        help="torch.profiler over the timed engine runs: the 25 costliest device ops, then the CPU view")
    parser.add_argument("--warm-up", choices=("positions", "full"), default="positions",
                        help="positions: three restoration positions (the shapes compilation specialises on); "
                             "full: the whole timed trace once, so every kernel a JIT specialises is built before timing")
    parser.add_argument("--kernels", choices=KERNELS, default="torch",
                        help="liger: Liger Kernel's fused RMSNorm, rotary and SwiGLU (CUDA), patched in after the reference ran")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.set_grad_enabled(False)
    model, tokenizer = build_model(args.model, args.device, dtype, args.layers)
    options = TraceOptions(samples=args.samples, self_check=False)
    rate = matmul_rate(args.device, dtype)
    prompts = {}
    for tokens in list(args.tokens) + list(args.fast_only_tokens):
        ids, subject, answer, description = (
            random_prompt(model, tokens, args.device) if tokenizer is None else known_prompt(tokenizer, tokens)
        )
        embeds = model.get_input_embeddings()(ids.to(args.device))
        sigma = 3 * embeds[subject[0]:subject[1]].float().std().item()
        run_options = dataclasses.replace(options, noise_std=sigma)
        prompts[tokens] = (ids, subject, answer, description, embeds, run_options)
    # the reference loop first, on the model's own code: the engine's kernels (patched into the model)
    # are then part of what the difference measures
    references = {}
    for tokens in args.tokens:
        ids, subject, answer, description, embeds, run_options = prompts[tokens]
        synchronize(args.device)
        started = time.perf_counter()
        reference = reference_trace(model, embeds, subject, answer, run_options, run_options.noise_std)
        synchronize(args.device)
        references[tokens] = (reference, time.perf_counter() - started)
    tracer = CausalTracer(model, model_name=args.model, compile=args.compile, kernels=args.kernels)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"device {device_name} ({args.device}, {torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"model {args.model} ({model.config.num_hidden_layers} layers, d={model.config.hidden_size}), {args.dtype}, "
          f"kinds {','.join(options.kinds)}, {options.samples} samples; matmul {rate / 1e12:.1f} TFLOP/s; "
          f"engine {'compiled' if args.compile else 'eager'}, kernels {tracer.kernels} (reference: the model's own)")
    ratios = []
    for tokens, (ids, subject, answer, description, embeds, run_options) in prompts.items():
        # warm-up, timed apart: the first restoration at the subject start, one after it and the last
        # position (one query) are the shapes that compilation specialises on; or the whole trace
        warm_up = run_options if args.warm_up == "full" else dataclasses.replace(
            run_options, token_range=(subject[0], subject[0] + 1, tokens - 1))
        synchronize(args.device)
        started = time.perf_counter()
        tracer.trace(input_ids=ids, subject_range=subject, answer_id=answer, options=warm_up)
        synchronize(args.device)
        print(f"{tokens} tokens: warm-up {time.perf_counter() - started:.2f} s "
              f"({'the whole trace' if args.warm_up == 'full' else 'three positions'}"
              f"{', compiling new shapes' if args.compile else ''})")
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        synchronize(args.device)
        profiler = profiled(args.device) if args.profile else contextlib.nullcontext()
        started = time.perf_counter()
        with profiler as profile:
            fast = tracer.trace(input_ids=ids, subject_range=subject, answer_id=answer, options=run_options)
            synchronize(args.device)
        fast_seconds = time.perf_counter() - started
        if args.profile:
            sort = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
            print(profile.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60))
            # the same ops told apart by their input shapes: which norm, rotary or merge a `mul` belongs to
            print(profile.key_averages(group_by_input_shape=True).table(
                sort_by=sort, row_limit=40, max_name_column_width=40, max_shapes_column_width=90))
        memory = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if args.device.startswith("cuda") else ""
        floor = engine_flops(model, tokens, run_options, subject[0]) / rate
        print(f"{tokens} tokens ({description}): fast {fast_seconds:.2f} s/prompt; arithmetic floor {floor:.2f} s "
              f"({fast_seconds / floor:.2f}x){memory}")
        if tokens not in references:
            continue
        reference, reference_seconds = references[tokens]
        difference = max(float((torch.from_numpy(fast.scores[k]) - reference[k]).abs().max()) for k in run_options.kinds)
        ratio = reference_seconds / fast_seconds
        ratios.append(f"{ratio:.2f}x@{tokens}tok")
        print(f"{tokens} tokens: reference {reference_seconds:.2f} s/prompt; ratio {ratio:.2f}; "
              f"max |fast - reference| = {difference:.2e}")
    print("speedup=" + ",".join(ratios))


if __name__ == "__main__":
    main()
