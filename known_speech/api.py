"""The Python API in one call: trace a text prompt of any `transformers` causal LM.

    >>> import known_speech
    >>> result = known_speech.trace_prompt("smollm2", "The capital of Italy is", subject="Italy", answer="Rome")
    >>> result.peak("mlp"), result.high_score, result.low_score
    >>> result.plot("trace.png")
"""

from __future__ import annotations

from collections.abc import Sequence

from .tracing import KINDS, CausalTracer, Kind, TraceOptions, TraceResult
from .tracing.kernels import check_kernels
from .tracing.metric import Metric
from .tracing.prompts import subject_chars, trace_text_prompt

__all__ = ["trace_prompt"]


def trace_prompt(model, prompt: str, subject: str, answer: str | None = None, *, tokenizer=None,
                 kinds: Sequence[Kind] = KINDS, samples: int = 10, noise_factor: float = 3.0,
                 noise_std: float | None = None, window: int = 10, metric: Metric = "prob", device: str = "cpu",
                 dtype: str = "auto", compile: bool = False, kernels: str = "torch",
                 subject_occurrence: int | None = None) -> TraceResult:
    """Causal trace of `prompt` with `subject` corrupted (ROME's semantics).

    model: a name or path for `transformers` ("smollm2": the offline SmolLM2-135M-Instruct), or a loaded
    causal LM with its `tokenizer`. answer: the expected attribute; its first token is traced (metric
    "prob" or "logprob"), or all its tokens teacher-forced ("attribute"); None traces the model's top
    prediction. The prompt is tokenized whole with the tokenizer's default special tokens (BOS where the
    model's tokenizer adds one). noise_std None: noise_factor x the std of this prompt's subject
    embeddings (ROME calibrates over many subjects: pass that sigma for comparable traces). compile and
    kernels ("liger", CUDA) choose how the engine runs, as `CausalTracer` says. A subject that occurs more
    than once is corrupted where it first occurs, with a warning in `result.warnings`, unless
    `subject_occurrence` (0 = the first) chooses; `result.metadata["subject_char_span"]` says which.
    A corrupted score above the clean one (a bad sigma or subject) is warned of there too."""
    subject_chars(prompt, subject, subject_occurrence)  # an error before the model loads
    options = TraceOptions(kinds=tuple(kinds), samples=samples, noise_factor=noise_factor, noise_std=noise_std,
                           window=window, metric=metric)
    name = model if isinstance(model, str) else ""
    if isinstance(model, str):
        from .evaluation.adapter import resolve_dtype
        from .loading import load_causal_lm

        check_kernels(kernels, device, compile)  # before loading; a loaded model is checked by the tracer
        model, tokenizer = load_causal_lm(model, dtype=resolve_dtype(dtype, device), device=device)
    if tokenizer is None:
        raise ValueError("a loaded model needs its tokenizer: trace_prompt(model, ..., tokenizer=tokenizer)")
    tracer = CausalTracer(model, model_name=name, compile=compile, kernels=kernels)
    return trace_text_prompt(tracer, tokenizer, prompt, subject, answer, options, subject_occurrence=subject_occurrence)
