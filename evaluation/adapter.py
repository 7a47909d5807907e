"""The adapter API: how a model turns a Known record into tracer input for one modality.

An adapter owns the model's prompt format (markers, speech tokens or audio embeddings), tells the
tracer which input positions hold the subject, and maps every input position to the text token of
the prompt it stands for, so that speech positions can be aggregated through their text token as in
the paper. Adapters register by name here or through the `known_speech.adapters` entry-point group.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from known_speech.spans import frame_span, tokens_overlapping
from known_speech.tracing.prompts import answer_token_id

__all__ = [
    "Modality",
    "ModelInput",
    "Adapter",
    "ADAPTERS",
    "ENTRY_POINT_GROUP",
    "register_adapter",
    "adapter_class",
    "available_adapters",
    "text_token_spans",
    "text_tokens_of_frames",
    "subject_frames",
    "subject_text_range",
]

logger = logging.getLogger(__name__)

Modality = Literal["text", "speech"]
ENTRY_POINT_GROUP = "known_speech.adapters"


@dataclass
class ModelInput:
    """What the tracer and the generator need for one record in one modality."""

    known_id: int
    modality: Modality
    subject_range: tuple[int, int]  # [start, end) of input positions to corrupt
    text_tokens: list[str]  # the written prompt's text tokens: position categories are defined on these
    subject_text_range: tuple[int, int]  # [start, end) in text_tokens
    text_token_of_position: list[int | None]  # per input position; None for markers before the prompt
    labels: list[str]  # per input position, for figures
    input_ids: list[int] | None = None
    inputs_embeds: torch.Tensor | None = None  # (positions, hidden) for continuous-embedding models
    metadata: dict = field(default_factory=dict)

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


class Adapter(ABC):
    """One model family. Subclasses set `name` and `modalities`, load `model` (a `transformers` model
    with `generate`) and `tokenizer` in `__init__`, and implement `prepare`."""

    name: ClassVar[str]
    modalities: ClassVar[tuple[Modality, ...]]
    model: nn.Module
    tokenizer: object

    def __init__(self, model_name: str, device: str = "cpu", dtype: str = "float32"):
        self.model_name = model_name
        self.device = device
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    @property
    def decoder(self) -> nn.Module:
        """The causal LM the tracer runs: `model`, whose architecture spec says where its decoder layers are."""
        return self.model

    @abstractmethod
    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        """Model input for a record (a dataset row, or a Known record for text)."""

    def answer_id(self, record: dict) -> int:
        """The token whose probability is traced: the attribute's first token as it continues the prompt
        (the same for both modalities, so T→T and S→T trace the same token)."""
        return answer_token_id(self.tokenizer, record["attribute"])

    @torch.no_grad()
    def generate(self, model_input: ModelInput, max_new_tokens: int) -> str:
        """Greedy continuation of the ids or input embeddings, decoded as text."""
        if model_input.inputs_embeds is not None:
            inputs = {"inputs_embeds": model_input.inputs_embeds.unsqueeze(0)}
            prompt_length = 0  # generate returns only the new tokens when given embeddings
        else:
            inputs = {"input_ids": torch.tensor([model_input.input_ids], device=self.device)}
            prompt_length = len(model_input.input_ids)
        mask = torch.ones((1, model_input.length), dtype=torch.long, device=self.device)
        output = self.model.generate(**inputs, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(output[0, prompt_length:], skip_special_tokens=True)

    def check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ValueError(f"adapter {self.name!r} supports modalities {self.modalities}, not {modality!r}")

    def input_embeddings(self, model_input: ModelInput) -> torch.Tensor:
        """(positions, hidden) embeddings entering the first layer (noise is calibrated on these)."""
        if model_input.inputs_embeds is not None:
            return model_input.inputs_embeds
        ids = torch.tensor(model_input.input_ids, device=self.device)
        return self.decoder.get_input_embeddings()(ids)


ADAPTERS: dict[str, type[Adapter]] = {}


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available by its `name`."""
    ADAPTERS[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in ADAPTERS:
            continue
        try:
            ADAPTERS[entry_point.name] = entry_point.load()
        except Exception as err:  # a broken third-party plug-in must not hide ours
            logger.warning("adapter entry point %s (%s) failed to load: %s", entry_point.name, entry_point.value, err)


def available_adapters() -> list[str]:
    from . import hf_text, qwen2_audio, spiritlm  # noqa: F401  (register the bundled adapters)

    _load_entry_points()
    return sorted(ADAPTERS)


def adapter_class(name: str) -> type[Adapter]:
    names = available_adapters()
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; available: {names} (add one via the {ENTRY_POINT_GROUP!r} entry points)")
    return ADAPTERS[name]


def text_token_spans(tokenizer, prompt: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of the prompt (no special tokens) and each token's character span."""
    encoding = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=False)
    return list(encoding["input_ids"]), [tuple(span) for span in encoding["offset_mapping"]]


def text_tokens_of_frames(
    frame_starts: np.ndarray, num_frames: int, rate_hz: float, words: list[dict], token_char_spans: list[tuple[int, int]]
) -> list[int]:
    """For each speech position (a run of frames starting at `frame_starts[i]`), the text token it voices.

    A position belongs to the aligned word its midpoint falls in (the nearest word in silences); a word
    spoken as several text tokens is split among them in proportion to their characters.
    """
    if not words:
        raise ValueError("the record has no aligned words")
    frame_ends = np.append(frame_starts[1:], num_frames)
    midpoints = (frame_starts + frame_ends) / 2.0 / rate_hz
    word_starts = np.array([w["start_s"] for w in words])
    word_ends = np.array([w["end_s"] for w in words])
    links: list[int] = []
    for midpoint in midpoints:
        inside = np.flatnonzero((word_starts <= midpoint) & (midpoint < word_ends))
        if inside.size:
            index = int(inside[0])
        else:
            distance = np.maximum(word_starts - midpoint, midpoint - word_ends)
            index = int(np.argmin(distance))
        word = words[index]
        tokens = tokens_overlapping(token_char_spans, word["char_start"], word["char_end"])
        if not tokens:
            raise ValueError(f"no text token overlaps word {word['word']!r}")
        widths = np.array([max(1, min(token_char_spans[k][1], word["char_end"]) - max(token_char_spans[k][0], word["char_start"]))
                           for k in tokens], dtype=float)
        bounds = word["start_s"] + (word["end_s"] - word["start_s"]) * np.cumsum(widths) / widths.sum()
        links.append(tokens[min(int(np.searchsorted(bounds, midpoint, side="right")), len(tokens) - 1)])
    return links


def subject_frames(record: dict, rate_hz: float) -> tuple[int, int]:
    start_s, end_s = record["subject_time_span"]
    return frame_span(start_s, end_s, rate_hz)


def subject_text_range(record: dict, char_spans: list[tuple[int, int]]) -> tuple[int, int]:
    """[start, end) of the text tokens overlapping the record's subject characters."""
    tokens = tokens_overlapping(char_spans, *record["subject_char_span"])
    if not tokens:
        raise ValueError(f"known_id={record['known_id']}: field 'subject_char_span': no text token inside it")
    return tokens[0], tokens[-1] + 1
