"""Where a spirit-smollm2 training step's time goes, side by side in one run: batch drawing, and the step with
peft's trainable token rows (what `train` uses) against the same step with LoRA alone (the rows frozen), at a
small and a large batch, so that the part of a step that does not grow with the batch shows. Training ran at
0.5–0.7 s a step on an H200 whatever the batch (BENCHMARKS.md, "spirit-smollm2"): this says which part.

    python benchmarks/organism_step.py --bundle organism/bundle --device cpu --steps 6 --batch-tokens 512,4096
"""

from __future__ import annotations

import argparse
import random
import time

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _step(model, parameters, optimizer, batch, options, base_vocab, pad) -> None:
    from known_speech.evaluation.organism.train import _losses

    loss, _ = _losses(model, batch, options, base_vocab, pad)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()


def main() -> None:
    from known_speech.evaluation.organism.bundle import read_bundle
    from known_speech.evaluation.organism.sequences import SequenceBuilder
    from known_speech.evaluation.organism.train import TrainOptions, _Batches, _load_backbone, build_organism

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per setting (after one warm-up step)")
    parser.add_argument("--batch-tokens", default="512,4096", help="padded positions per step, comma-separated")
    parser.add_argument("--draws", type=int, default=200, help="batches drawn for the drawing time")
    args = parser.parse_args()
    torch.manual_seed(0)
    sizes = [int(size) for size in args.batch_tokens.split(",")]
    options = TrainOptions(args.bundle, "", device=args.device, batch_tokens=max(sizes))
    bundle = read_bundle(args.bundle)
    model, tokenizer = _load_backbone(options.gguf, args.device)
    model, base_vocab = build_organism(model, tokenizer, bundle, options)
    model.to(args.device).train()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    builder = SequenceBuilder(tokenizer, options.speech_weight)
    train_set = bundle.split("train")
    started = time.perf_counter()
    builder.warm([u.text for u in bundle.utterances] + [" " + u.continuation for u in bundle.utterances])
    print(f"tokenizing the bundle once: {time.perf_counter() - started:.1f} s")
    for size in sizes:
        batches = _Batches(builder, train_set, bundle.rate_hz, TrainOptions(
            args.bundle, "", device=args.device, batch_tokens=size), random.Random(0))
        started = time.perf_counter()
        drawn = [batches.draw() for _ in range(args.draws)]
        print(f"batch_tokens {size}: drawing {1000 * (time.perf_counter() - started) / args.draws:.1f} ms a batch "
              f"({sum(len(b) for b in drawn) / len(drawn):.0f} sequences)")
        lora = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
        rows = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
        seconds = {}
        for setting, trained in (("LoRA + trainable token rows (train)", lora + rows), ("LoRA alone", lora)):
            for parameter in rows:
                parameter.requires_grad_(trained is not lora)
            optimizer = torch.optim.AdamW(trained, lr=1e-5)
            _step(model, trained, optimizer, drawn[0], options, base_vocab, pad)  # warm-up
            _sync(args.device)
            started = time.perf_counter()
            for batch in drawn[1:1 + args.steps]:
                _step(model, trained, optimizer, batch, options, base_vocab, pad)
            _sync(args.device)
            seconds[setting] = (time.perf_counter() - started) / args.steps
            print(f"  {setting}: {seconds[setting]:.3f} s a step")
        first, second = seconds.values()
        print(f"  ratio (with rows / LoRA alone): {first / second:.2f}")
        for parameter in rows:
            parameter.requires_grad_(True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                + ([torch.profiler.ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])) as prof:
        trained = [p for p in model.parameters() if p.requires_grad]
        _step(model, trained, torch.optim.AdamW(trained, lr=1e-5), drawn[1], options, base_vocab, pad)
        _sync(args.device)
    events = prof.key_averages()
    print(f"one step at batch_tokens {sizes[-1]}: {sum(e.count for e in events if e.key.startswith('aten::'))} aten "
          f"calls; the 12 largest by self CPU time:")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    print("the 15 most frequent calls:")
    for event in sorted(events, key=lambda e: -e.count)[:15]:
        print(f"  {event.count:7d}  {event.key}")


if __name__ == "__main__":
    main()
