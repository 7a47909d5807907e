"""The input of one record in one modality, as the tracer and the generator take it, and the map from
its positions to the written prompt's text tokens that position categories are defined on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from known_speech.tracing.prompts import AnswerToken

__all__ = ["Modality", "ModelInput", "PositionMap", "control_text_range"]

Modality = Literal["text", "speech"]


@dataclass
class ModelInput:
    """What the tracer and the generator need for one record in one modality."""

    known_id: int
    modality: Modality
    subject_range: tuple[int, int]  # [start, end) of input positions to corrupt
    text_tokens: list[str]  # the written prompt's text tokens: position categories are defined on these
    subject_text_range: tuple[int, int]  # [start, end) in text_tokens
    text_token_of_position: list[int | None]  # per input position; None for BOS and markers
    labels: list[str]  # per input position, for figures
    answer: AnswerToken  # the traced token: the attribute's first, as it continues this prompt
    prompt_text: str  # the exact string the model's own code tokenizes (placeholders for embedded audio)
    bos: bool  # the input starts with the tokenizer's BOS
    input_ids: list[int] | None = None
    inputs_embeds: torch.Tensor | None = None  # (positions, hidden) for continuous-embedding models
    pieces: list[str] = field(default_factory=list)  # the tokenizer's token strings, per position
    text_char_spans: list[tuple[int, int]] = field(default_factory=list)  # of text_tokens, in the prompt
    metadata: dict = field(default_factory=dict)
    answer_separator: str = " "  # between the prompt string and the attribute: " " continues it, "" starts a reply
    audio: np.ndarray | None = field(default=None, repr=False)  # the waveform, for models that generate from it

    def __post_init__(self) -> None:
        length = len(self.input_ids) if self.input_ids is not None else int(self.inputs_embeds.shape[0])
        if len(self.text_token_of_position) != length or len(self.labels) != length:
            raise ValueError(
                f"known_id={self.known_id}: {length} input positions but {len(self.text_token_of_position)} "
                f"text-token links and {len(self.labels)} labels"
            )
        start, end = self.subject_range
        if not 0 <= start < end <= length:
            raise ValueError(f"known_id={self.known_id}: subject_range={self.subject_range} outside 0..{length}")

    @property
    def length(self) -> int:
        return len(self.text_token_of_position)

    def positions_of_text_range(self, text_start: int, text_end: int) -> tuple[int, int] | None:
        """[start, end) of the input positions linked to text tokens [text_start, text_end), or None."""
        positions = [p for p, k in enumerate(self.text_token_of_position) if k is not None and text_start <= k < text_end]
        return (positions[0], positions[-1] + 1) if positions else None

    def with_ids(self, ids: list[int], subject_range: tuple[int, int] | None = None) -> "ModelInput":
        """This prompt with other ids for generation (its units shuffled, or another subject's swapped in): the
        positions stand for no text token of the prompt any more."""
        return replace(self, input_ids=list(ids), text_token_of_position=[None] * len(ids), labels=[""] * len(ids),
                       pieces=[], subject_range=subject_range or self.subject_range)

    def continued(self, ids: list[int], embeddings: torch.Tensor | None, labels: list[str], pieces: list[str]) -> "ModelInput":
        """This input followed by `ids` (the attribute metric's teacher-forced tokens): they stand for no
        text token of the prompt, so position categories stay those of the prompt."""
        if not ids:
            return self
        return replace(
            self,
            input_ids=self.input_ids + list(ids) if self.input_ids is not None else None,
            inputs_embeds=torch.cat([self.inputs_embeds, embeddings]) if self.inputs_embeds is not None else None,
            text_token_of_position=self.text_token_of_position + [None] * len(ids),
            labels=self.labels + list(labels),
            pieces=self.pieces + list(pieces) if self.pieces else [],
            metadata={**self.metadata, "teacher_forced_ids": list(ids)},
        )

    def provenance(self) -> dict:
        """What the result records of how this input was built."""
        return {"prompt_text": self.prompt_text, "bos": self.bos, "pieces": self.pieces,
                "answer_separator": self.answer_separator,
                "answer_id": self.answer.id, "answer_piece": self.answer.piece,
                "answer_skipped": list(self.answer.skipped), **self.metadata}

    def control_span(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """A span of as many text tokens as the subject to corrupt instead (the control): its text-token
        range and its input positions, or None when it has no room."""
        control_text = control_text_range(self.subject_text_range, len(self.text_tokens))
        positions = self.positions_of_text_range(*control_text) if control_text else None
        return (control_text, positions) if positions else None

    def position_map(self, corrupted_text_range: tuple[int, int]) -> "PositionMap":
        return PositionMap(self.text_tokens, self.text_token_of_position, tuple(corrupted_text_range))


@dataclass(frozen=True)
class PositionMap:
    """What a traced item needs to be averaged by position category: the prompt's text tokens, the text
    token each input position stands for, and which text tokens were corrupted."""

    text_tokens: list[str]
    text_token_of_position: list[int | None]
    corrupted_text_range: tuple[int, int]

    def to_dict(self) -> dict:
        return {"text_tokens": self.text_tokens, "text_token_of_position": self.text_token_of_position,
                "corrupted_text_range": list(self.corrupted_text_range)}

    @classmethod
    def from_dict(cls, data: dict) -> "PositionMap":
        return cls(list(data["text_tokens"]), list(data["text_token_of_position"]), tuple(data["corrupted_text_range"]))


def control_text_range(subject: tuple[int, int], num_tokens: int) -> tuple[int, int] | None:
    """A span of as many text tokens as the subject, not overlapping it and short of the last token:
    the tokens right after the subject where they fit, else right before it; None when neither fits."""
    start, end = subject
    length = end - start
    if end + length <= num_tokens - 1:
        return end, end + length
    if start - length >= 0:
        return start - length, start
    return None
