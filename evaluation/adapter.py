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
from known_speech.tracing.prompts import AnswerToken, Encoding, answer_token, encode

__all__ = [
    "Modality",
    "ModelInput",
    "Adapter",
    "ADAPTERS",
    "ENTRY_POINT_GROUP",
    "register_adapter",
    "adapter_class",
    "available_adapters",
    "resolve_dtype",
    "text_model_input",
    "encoded_input",
    "prompt_tokens",
    "record_answer",
    "position_labels",
    "subject_chars",
    "text_tokens_of_times",
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

    def provenance(self) -> dict:
        """What the result records of how this input was built."""
        return {"prompt_text": self.prompt_text, "bos": self.bos, "pieces": self.pieces,
                "answer_id": self.answer.id, "answer_piece": self.answer.piece,
                "answer_skipped": list(self.answer.skipped), **self.metadata}


class Adapter(ABC):
    """One model family. Subclasses set `name` and `modalities`, load `model` (a `transformers` model
    with `generate`) and `tokenizer` in `__init__`, and implement `prepare`."""

    name: ClassVar[str]
    modalities: ClassVar[tuple[Modality, ...]]
    model: nn.Module
    tokenizer: object

    def __init__(self, model_name: str, device: str = "cpu", dtype: str = "auto"):
        self.model_name = model_name
        self.device = device
        self.dtype = resolve_dtype(dtype, device)
        self.options: dict = {}  # adapter-specific settings that change the input, recorded with results

    @property
    def decoder(self) -> nn.Module:
        """The causal LM the tracer runs: `model`, whose architecture spec says where its decoder layers are."""
        return self.model

    @abstractmethod
    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        """Model input for a record (a dataset row, or a Known record for text)."""

    def banned_token_ids(self, modality: Modality) -> list[int]:
        """Ids the model's own text generation forbids (Spirit LM: markers and speech tokens)."""
        return []

    @torch.no_grad()
    def generate(self, model_input: ModelInput, max_new_tokens: int) -> str:
        """Greedy continuation of the ids or input embeddings, decoded as text, with the banned ids banned."""
        if model_input.inputs_embeds is not None:
            inputs = {"inputs_embeds": model_input.inputs_embeds.unsqueeze(0)}
            prompt_length = 0  # generate returns only the new tokens when given embeddings
        else:
            inputs = {"input_ids": torch.tensor([model_input.input_ids], device=self.device)}
            prompt_length = len(model_input.input_ids)
        banned = self.banned_token_ids(model_input.modality)
        mask = torch.ones((1, model_input.length), dtype=torch.long, device=self.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        output = self.model.generate(**inputs, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                     bad_words_ids=[[i] for i in banned] or None, pad_token_id=pad)
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


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """"auto": bfloat16 on CUDA (as Spirit LM's and most 7B models' own code loads them), float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype={dtype!r}: choose auto, float32, bfloat16 or float16")
    return getattr(torch, dtype)


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


def text_model_input(tokenizer, record: dict, prefix: str = "") -> ModelInput:
    """The written prompt after an optional marker string (Spirit LM's "[Text]"), tokenized whole as the
    model's own code does; the subject and the text tokens are found through character offsets."""
    prompt = record["prompt"]
    prompt_text = prefix + prompt
    encoding = encode(tokenizer, prompt_text)
    links, text_tokens, char_spans = prompt_tokens(encoding, len(prefix), len(prompt_text))
    subject_start, subject_end = subject_chars(record)
    subject_positions = encoding.positions_overlapping(len(prefix) + subject_start, len(prefix) + subject_end)
    if not subject_positions:
        raise ValueError(f"known_id={record['known_id']}: field 'subject': no token of {prompt_text!r} covers it")
    return encoded_input(tokenizer, record, encoding, "text", subject_positions, links, text_tokens,
                         subject_text_range(record, char_spans), char_spans)


def encoded_input(tokenizer, record: dict, encoding: Encoding, modality: Modality, subject_positions: list[int],
                  links: list[int | None], text_tokens: list[str], text_subject: tuple[int, int],
                  text_char_spans: list[tuple[int, int]], metadata: dict | None = None) -> ModelInput:
    """The ModelInput of an id-input model for `encoding`, the whole prompt string as the model's code
    tokenizes it; the answer token is found on that same string."""
    return ModelInput(
        known_id=int(record["known_id"]),
        modality=modality,
        subject_range=(subject_positions[0], subject_positions[-1] + 1),
        text_tokens=text_tokens,
        subject_text_range=text_subject,
        text_token_of_position=links,
        labels=position_labels(tokenizer, encoding),
        answer=record_answer(tokenizer, encoding.text, record),
        prompt_text=encoding.text,
        bos=encoding.bos,
        input_ids=encoding.ids,
        pieces=encoding.pieces,
        text_char_spans=text_char_spans,
        metadata=metadata or {},
    )


def prompt_tokens(encoding: Encoding, start: int, end: int) -> tuple[list[int | None], list[str], list[tuple[int, int]]]:
    """The ids of `encoding` inside characters [start, end): each position's text-token index (None
    outside), the text tokens (the characters each covers, so they join to the prompt; the leading bytes
    of a character spelt in byte pieces are empty), and their character spans relative to `start`."""
    links: list[int | None] = []
    tokens, spans = [], []
    for span in encoding.char_spans:
        if span is not None and start <= span[0] and span[1] <= end:
            links.append(len(tokens))
            tokens.append(encoding.text[span[0]:span[1]])
            spans.append((span[0] - start, span[1] - start))
        else:
            links.append(None)
    for index in range(len(tokens) - 1):
        if spans[index] == spans[index + 1]:
            tokens[index] = ""
    if not tokens:
        raise ValueError(f"no token of {encoding.text!r} lies inside characters [{start}, {end})")
    return links, tokens, spans


def position_labels(tokenizer, encoding: Encoding) -> list[str]:
    """Each position as text for figures; pieces that decode to nothing (a lone "▁") as themselves."""
    return [tokenizer.decode([token_id]) or piece for token_id, piece in zip(encoding.ids, encoding.pieces)]


def record_answer(tokenizer, prompt_text: str, record: dict) -> AnswerToken:
    try:
        return answer_token(tokenizer, prompt_text, record["attribute"])
    except ValueError as err:
        raise ValueError(f"known_id={record['known_id']}: field 'attribute': {err}") from err


def subject_chars(record: dict) -> tuple[int, int]:
    """[start, end) of the subject in the prompt: the record's span, else the subject's first occurrence."""
    if record.get("subject_char_span"):
        start, end = record["subject_char_span"]
        return int(start), int(end)
    start = record["prompt"].find(record["subject"])
    if start < 0:
        raise ValueError(f"known_id={record['known_id']}: field 'subject': {record['subject']!r} is not in the prompt")
    return start, start + len(record["subject"])


def text_tokens_of_times(midpoints_s: np.ndarray, words: list[dict], token_char_spans: list[tuple[int, int]]) -> list[int]:
    """For each speech position (the midpoint of the audio it voices, in seconds), the text token it voices.

    A position belongs to the aligned word its midpoint falls in (the nearest word in silences); a word
    spoken as several text tokens is split among them in proportion to their characters.
    """
    if not words:
        raise ValueError("the record has no aligned words")
    midpoints = np.asarray(midpoints_s, dtype=float)
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


def text_tokens_of_frames(frame_starts: np.ndarray, num_frames: int, rate_hz: float, words: list[dict],
                          token_char_spans: list[tuple[int, int]]) -> list[int]:
    """`text_tokens_of_times` for runs of frames at `rate_hz` starting at `frame_starts`."""
    frame_starts = np.asarray(frame_starts)
    frame_ends = np.append(frame_starts[1:], num_frames)
    return text_tokens_of_times((frame_starts + frame_ends) / 2.0 / rate_hz, words, token_char_spans)


def subject_frames(record: dict, rate_hz: float) -> tuple[int, int]:
    start_s, end_s = record["subject_time_span"]
    return frame_span(start_s, end_s, rate_hz)


def subject_text_range(record: dict, char_spans: list[tuple[int, int]]) -> tuple[int, int]:
    """[start, end) of the text tokens overlapping the record's subject characters."""
    tokens = tokens_overlapping(char_spans, *subject_chars(record))
    if not tokens:
        raise ValueError(f"known_id={record['known_id']}: field 'subject_char_span': no text token inside it")
    return tokens[0], tokens[-1] + 1
