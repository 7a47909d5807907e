"""Text prompts as the model's own tokenizer encodes them: ids, pieces, character spans, BOS, answer token.

A prompt is always tokenized whole, with the tokenizer's default special tokens (BOS where the model's
tokenizer adds one), because tokenizing parts separately changes the ids: a SentencePiece tokenizer adds
a dummy prefix per chunk, a marker may leave a lone "▁" behind, and " Rome" alone may become "▁" + "▁Rome".
Positions are then found through each piece's character span in that one string.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from known_speech.source import subject_starts

from .engine import CausalTracer
from .result import TraceOptions, TraceResult

__all__ = [
    "Encoding",
    "AnswerToken",
    "encode",
    "answer_token",
    "attribute_ids",
    "is_blank_piece",
    "tokens_overlapping",
    "subject_chars",
    "subject_token_range",
    "trace_text_prompt",
]

logger = logging.getLogger(__name__)

# what a word boundary looks like inside a piece: SentencePiece's "▁", byte-level BPE's "Ġ"/"Ċ", plain space
_BLANK_CHARACTERS = frozenset(" \t\n▁ĠĊ")


@dataclass(frozen=True)
class Encoding:
    """One string as the model receives it. `char_spans[i]` is the [start, end) of `text` that id i covers,
    or None for ids that cover no character (BOS, EOS, a dummy-prefix "▁")."""

    text: str
    ids: list[int]
    pieces: list[str]
    char_spans: list[tuple[int, int] | None]
    bos: bool  # the tokenizer put its BOS first

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.pieces) == len(self.char_spans):
            raise ValueError(f"{len(self.ids)} ids, {len(self.pieces)} pieces, {len(self.char_spans)} spans")

    def __len__(self) -> int:
        return len(self.ids)

    def positions_overlapping(self, char_start: int, char_end: int) -> list[int]:
        """Positions whose characters overlap [char_start, char_end) of `text`."""
        spans = [span if span is not None else (0, 0) for span in self.char_spans]
        return tokens_overlapping(spans, char_start, char_end)


@dataclass(frozen=True)
class AnswerToken:
    """The token whose probability is traced: the first the attribute adds after the prompt."""

    id: int
    piece: str  # the tokenizer's token string ("▁Rome", "ĠRome")
    text: str  # what it decodes to
    skipped: tuple[str, ...] = field(default=())  # whitespace-only pieces passed over before it


def tokens_overlapping(char_spans: Sequence[tuple[int, int]], char_start: int, char_end: int) -> list[int]:
    """Indices of the tokens whose character spans (a tokenizer's offsets) overlap [char_start, char_end)."""
    return [k for k, (a, b) in enumerate(char_spans) if a < char_end and char_start < b]


def is_blank_piece(piece: str) -> bool:
    return bool(piece) and all(character in _BLANK_CHARACTERS for character in piece)


def encode(tokenizer, text: str) -> Encoding:
    """`text` tokenized whole with the tokenizer's default special tokens, and each id's characters.

    Tokenizers that reproduce a reference implementation (`encode_with_offsets`) answer themselves;
    `transformers` tokenizers give offsets from their fast backend."""
    if hasattr(tokenizer, "encode_with_offsets"):
        return tokenizer.encode_with_offsets(text)
    if not getattr(tokenizer, "is_fast", True):
        raise ValueError(f"{type(tokenizer).__name__} has no character offsets; load the model's fast tokenizer")
    encoding = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = list(encoding["input_ids"])
    spans = [None if special or start == end else (int(start), int(end))
             for (start, end), special in zip(encoding["offset_mapping"], encoding["special_tokens_mask"])]
    bos_id = getattr(tokenizer, "bos_token_id", None)
    return Encoding(text, ids, tokenizer.convert_ids_to_tokens(ids), spans,
                    bos=bos_id is not None and bool(ids) and ids[0] == bos_id and spans[0] is None)


def _continuation(tokenizer, prompt_text: str, attribute: str, separator: str = " ") -> tuple[Encoding, int]:
    """`prompt_text + separator + attribute` tokenized as the prompt is, and where the prompt's ids end in it
    (the separator: a space continues a sentence; "" starts a chat reply right after its header)."""
    prompt = encode(tokenizer, prompt_text)
    answer = attribute.strip()
    if not answer:
        raise ValueError(f"attribute {attribute!r} is empty")
    full = encode(tokenizer, f"{prompt_text}{separator}{answer}")
    ids = prompt.ids
    if ids and prompt.char_spans[-1] is None and ids[-1] == getattr(tokenizer, "eos_token_id", None):
        ids = ids[:-1]  # a tokenizer that appends EOS to every string
    if full.ids[:len(ids)] != ids:
        raise ValueError(f"attribute {attribute!r} changes how the prompt tokenizes: "
                         f"{prompt.pieces} vs {full.pieces[:len(ids)]}")
    return full, len(ids)


def answer_token(tokenizer, prompt_text: str, attribute: str, separator: str = " ") -> AnswerToken:
    """The first id that `prompt_text + separator + attribute` has and `prompt_text` has not, both tokenized
    the same way; whitespace-only pieces ("▁" from a dummy prefix) are skipped and recorded."""
    full, start = _continuation(tokenizer, prompt_text, attribute, separator)
    skipped = []
    for position in range(start, len(full)):
        piece = full.pieces[position]
        if full.char_spans[position] is not None and not is_blank_piece(piece):
            return AnswerToken(full.ids[position], piece, tokenizer.decode([full.ids[position]]), tuple(skipped))
        skipped.append(piece)
    raise ValueError(f"attribute {attribute!r} adds no word piece after the prompt (only {skipped})")


def attribute_ids(tokenizer, prompt_text: str, attribute: str, separator: str = " ") -> list[int]:
    """Every id that `prompt_text + separator + attribute` adds to the prompt's, blank pieces included (what
    the attribute metric teacher-forces, as MEMIT scores a target); a trailing EOS is not one of them."""
    full, start = _continuation(tokenizer, prompt_text, attribute, separator)
    ids = [i for i, span in zip(full.ids[start:], full.char_spans[start:]) if span is not None or i != getattr(tokenizer, "eos_token_id", None)]
    if not any(span is not None and not is_blank_piece(piece)
               for span, piece in zip(full.char_spans[start:], full.pieces[start:])):
        raise ValueError(f"attribute {attribute!r} adds no word piece after the prompt")
    return ids


def subject_token_range(encoding: Encoding, char_start: int, char_end: int) -> tuple[int, int]:
    """[start, end) of the positions overlapping the subject's characters [char_start, char_end)."""
    positions = encoding.positions_overlapping(char_start, char_end)
    if not positions:
        raise ValueError(f"no token of {encoding.text!r} overlaps characters [{char_start}, {char_end})")
    return positions[0], positions[-1] + 1


def subject_chars(prompt: str, subject: str, occurrence: int | None = None) -> tuple[int, int, int]:
    """(char_start, char_end, occurrences): where `subject` occurs in `prompt` as whole words, its
    `occurrence`-th time (0: the first, also the default), and how many times it occurs."""
    starts = subject_starts(prompt, subject)
    if not starts:
        raise ValueError(f"subject {subject!r} does not occur in prompt {prompt!r} as whole words")
    index = occurrence or 0
    if not 0 <= index < len(starts):
        raise ValueError(f"subject_occurrence={occurrence}: {subject!r} occurs {len(starts)} time(s) in {prompt!r}; "
                         f"choose 0 to {len(starts) - 1}")
    return starts[index], starts[index] + len(subject), len(starts)


def trace_text_prompt(
    tracer: CausalTracer,
    tokenizer,
    prompt: str,
    subject: str,
    answer: str | None = None,
    options: TraceOptions = TraceOptions(),
    embedding_std: float | None = None,
    subject_occurrence: int | None = None,
) -> TraceResult:
    """Trace a text prompt tokenized whole with the tokenizer's default special tokens. Without `answer`,
    the clean run's top prediction is traced (as ROME); with `options.metric="attribute"`, the input
    is the prompt and the attribute but its last token, and all the attribute's tokens are scored.
    A subject that occurs more than once is corrupted where it first occurs unless `subject_occurrence`
    (0 = the first) says which; the result records which (metadata "subject_char_span", "subject_occurrence")
    and, where the choice was left to the default, warns."""
    char_start, char_end, occurrences = subject_chars(prompt, subject, subject_occurrence)
    encoding = encode(tokenizer, prompt)
    input_ids, skipped = list(encoding.ids), ()
    if options.metric == "attribute":
        if answer is None:
            raise ValueError("metric='attribute' scores the whole attribute: give the answer")
        answer_ids = attribute_ids(tokenizer, prompt, answer)
        input_ids += answer_ids[:-1]
    elif answer is None:
        with torch.no_grad():
            logits = tracer.model(input_ids=torch.tensor([input_ids], device=tracer.runner.device)).logits
        answer_ids = [int(logits[0, -1].argmax())]
    else:
        target = answer_token(tokenizer, prompt, answer)
        answer_ids, skipped = [target.id], target.skipped
    result = tracer.trace(
        input_ids=torch.tensor(input_ids),
        subject_range=subject_token_range(encoding, char_start, char_end),
        answer_ids=answer_ids,
        options=options,
        embedding_std=embedding_std,
        tokens=[tokenizer.decode([i]) for i in input_ids],
    )
    result.answer = answer.strip() if options.metric == "attribute" else tokenizer.decode(answer_ids)
    occurrence = subject_occurrence or 0
    result.metadata.update({"prompt": prompt, "subject": subject, "prompt_text": prompt, "bos": encoding.bos,
                            "subject_char_span": [char_start, char_end], "subject_occurrence": occurrence,
                            "answer_pieces": tokenizer.convert_ids_to_tokens(answer_ids),
                            "answer_skipped": list(skipped)})
    if occurrences > 1 and subject_occurrence is None:
        result.warnings.append(f"subject {subject!r} occurs {occurrences} times in the prompt; the first (characters "
                               f"{char_start}..{char_end - 1}) was corrupted: choose with subject_occurrence= "
                               f"(0 to {occurrences - 1})")
        logger.warning(result.warnings[-1])
    return result
