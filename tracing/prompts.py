"""Text prompts: subject token range, answer token, and tracing one prompt end to end."""

from __future__ import annotations

import torch

from known_speech.spans import tokens_overlapping

from .engine import CausalTracer
from .result import TraceOptions, TraceResult

__all__ = ["subject_token_range", "answer_token_id", "trace_text_prompt"]


def subject_token_range(tokenizer, prompt: str, subject: str) -> tuple[int, int]:
    """[start, end) of the tokens overlapping the subject's first occurrence in the prompt."""
    char_start = prompt.find(subject)
    if char_start < 0:
        raise ValueError(f"subject {subject!r} does not occur in prompt {prompt!r}")
    char_end = char_start + len(subject)
    encoding = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=False)
    tokens = tokens_overlapping(encoding["offset_mapping"], char_start, char_end)
    if not tokens:
        raise ValueError(f"no token of {prompt!r} overlaps subject {subject!r}")
    return tokens[0], tokens[-1] + 1


def answer_token_id(tokenizer, answer: str) -> int:
    """The first token of the answer as it continues the prompt (with its leading space)."""
    ids = tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"answer {answer!r} tokenizes to nothing")
    return ids[0]


def trace_text_prompt(
    tracer: CausalTracer,
    tokenizer,
    prompt: str,
    subject: str,
    answer: str | None = None,
    options: TraceOptions = TraceOptions(),
    embedding_std: float | None = None,
) -> TraceResult:
    """Trace a text prompt; without `answer`, the clean run's top prediction is traced (as ROME)."""
    input_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    if answer is None:
        with torch.no_grad():
            logits = tracer.model(input_ids=input_ids.unsqueeze(0).to(tracer.runner.device)).logits
        answer_id = int(logits[0, -1].argmax())
    else:
        answer_id = answer_token_id(tokenizer, answer)
    result = tracer.trace(
        input_ids=input_ids,
        subject_range=subject_token_range(tokenizer, prompt, subject),
        answer_id=answer_id,
        options=options,
        embedding_std=embedding_std,
        tokens=[tokenizer.decode([i]) for i in input_ids.tolist()],
    )
    result.answer = tokenizer.decode([answer_id])
    result.metadata.update({"prompt": prompt, "subject": subject})
    return result
