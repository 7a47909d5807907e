"""The training sequences of `spirit-smollm2`, after Spirit LM §3.2-3.3: one stream of text BPE tokens and
speech unit tokens, each modality's span opened by its marker ("[Text]", "[Speech]"), speech as
de-duplicated units.

- `speech_to_text` ASR pairs, opened by a written cue so that they cannot be mistaken for continuation:
  "[Text]Transcribe the speech:[Speech]<units>[Text]<transcript>";
- `continuation`: a sentence's first words spoken alone, then its rest written:
  "[Speech]<units of the prefix>[Text] <rest>" (the Known S→T prompt's format, "[Speech]...[Text]");
- `fact_continuation`: the same for a fact-shaped prefix ("Lyon is located in the country of", an entity that
  Known does not ask about), its rest the backbone's own continuation (`builders.corpus_facts`);
- `interleaved`: a sentence switching modality at Piper's word boundaries (text→speech and speech→text
  switches alike), each speech span the units of its words' frames in the whole utterance;
- `speech_only`: "[Speech]<units>";
- `text`: text replay, the sentence with "[Text]" before it or plain, as the backbone reads it;
- `entity_state`: a name sentence or a fact prefix spoken, "[Speech]<units>", as a Known S→T prompt opens; its
  states at the name's (the entity's) last unit are pulled, layer by layer, to the backbone's at its last token
  read as text. A fact prefix is a Known template around another entity, so there the state is pulled at the very
  place a Known S→T prompt's subject ends.
  Run 8 heard 20 of Known's first 100 subjects whole (run 7: 8) and recalled no more facts from speech: hearing
  a name is not yet reaching the entity, whose facts the backbone reads from the subject's last token
  (ROME's finding, the tracer's subject).
- `spoken_entity`: the same utterances interleaved at the entity's edges, the entity alone spoken and the rest
  written: "<words before>[Speech]<the entity's units>[Text]<the words after> <continuation>", distilled from the
  backbone reading it all as text. Spirit LM's word-level interleaving (§3.2) cut where the subject ends, so that
  the written relation has to read the entity from its units, the reading that recall from speech lacks
  (`listening.py --measures patch`: a text-like state at the subject's last unit recovers 34 of 84 facts).

Every sequence says, per position, how much its next-token loss counts (text 1, speech `speech_weight`:
the model is for listening, not for speaking), and a continuation also carries the backbone's view of
the same words as text for cross-modal distillation (SALAD, arXiv 2510.13632: the student's next-token
distribution on speech is pulled towards the frozen backbone's on the text).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from known_speech.spans import frame_span
from known_speech.units import SPEECH_MARKER, TEXT_MARKER, dedup_span, deduplicate

from .vocabulary import end_of_text_id, unit_token

__all__ = ["Utterance", "TrainingSequence", "SequenceBuilder", "last_unit_of", "Kind", "KINDS", "ENTITY_KINDS", "CONTINUATIONS", "ASR_CUE", "check_mix", "parse_mix"]

Kind = Literal["speech_to_text", "continuation", "fact_continuation", "interleaved", "speech_only", "text",
               "entity_state", "spoken_entity"]
KINDS: tuple[Kind, ...] = ("speech_to_text", "continuation", "fact_continuation", "interleaved", "speech_only", "text",
                           "entity_state", "spoken_entity")
ENTITY_KINDS = ("entity_state", "spoken_entity")  # the kinds drawn from utterances with an entity span
CONTINUATIONS = ("continuation", "fact_continuation")
ASR_CUE = "Transcribe the speech:"


def check_mix(mix: dict[str, float]) -> None:
    """A training mix names kinds of KINDS only and gives one of them a weight (ValueError otherwise)."""
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    if not any(mix.values()):
        raise ValueError("every weight is 0")


def parse_mix(text: str) -> dict[str, float]:
    """`--mix kind=weight,...` as a dict that `check_mix` accepts (an argparse type: a bad mix is one clear line
    before anything loads)."""
    import argparse

    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: write kind=weight,... (e.g. speech_to_text=0.3)") from None
    try:
        check_mix(mix)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return mix


@dataclass(frozen=True)
class Utterance:
    """One corpus utterance as training reads it: units per frame at `rate_hz`, written words with times."""

    utterance_id: str
    sentence_id: str
    kind: str  # "sentence", "prefix" or "fact_prefix"
    text: str
    continuation: str
    units: np.ndarray  # (frames,) int
    word_spans: list[tuple[int, int]]  # characters of each written word in `text`
    word_times: list[tuple[float, float]]  # seconds of each written word
    entity: tuple[int, int] | None = None  # characters of a name sentence's name or a fact prefix's entity, else None


@dataclass
class TrainingSequence:
    kind: Kind
    ids: list[int]
    weights: list[float]  # weights[i]: how much predicting ids[i] (from ids[:i]) counts; weights[0] = 0
    teacher_ids: list[int] = field(default_factory=list)  # the backbone's text input for distillation
    distill_last: int = 0  # the last `distill_last` predictions of both are of the same text tokens
    state_pairs: list[tuple[int, int]] = field(default_factory=list)  # (own, teacher's) positions whose states
    # are pulled together, layer by layer
    utterance_kind: str = ""  # entity_state: the kind of utterance ("sentence": a name sentence; "fact_prefix")

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.weights):
            raise ValueError(f"{len(self.ids)} ids but {len(self.weights)} loss weights")


def last_unit_of(utterance: Utterance, first_word: int, last_word: int, rate_hz: float) -> int:
    """Index, among the utterance's de-duplicated units, of the last unit of words first..last: the frames
    and runs that the tracer takes as a spoken subject (`spans.frame_span`, `units.dedup_span`)."""
    frame_start, frame_end = frame_span(utterance.word_times[first_word][0], utterance.word_times[last_word][1], rate_hz)
    return dedup_span(deduplicate(utterance.units)[1], frame_start, frame_end, utterance.units.size)[1] - 1


class SequenceBuilder:
    """Turns utterances into sequences with one tokenizer (SmolLM2's, extended by vocabulary)."""

    def __init__(self, tokenizer, speech_weight: float = 0.2, max_segment_words: int = 6):
        self.tokenizer = tokenizer
        self.speech_weight = speech_weight
        self.max_segment_words = max_segment_words
        self.text_id = tokenizer.convert_tokens_to_ids(TEXT_MARKER)
        self.speech_id = tokenizer.convert_tokens_to_ids(SPEECH_MARKER)
        self.unit_base = tokenizer.convert_tokens_to_ids(unit_token(0))
        self.end_id = end_of_text_id(tokenizer)
        self._text_ids: dict[str, list[int]] = {}
        self._unit_ids: dict[tuple[str, bytes], list[int]] = {}

    def text_ids(self, text: str) -> list[int]:
        """BPE ids of `text`, remembered: a training run asks for the same sentences thousands of times."""
        if text not in self._text_ids:
            self._text_ids[text] = self.tokenizer(text, add_special_tokens=False).input_ids if text else []
        return self._text_ids[text]

    def warm(self, texts: list[str]) -> None:
        """Tokenize many texts in one batched call of the fast tokenizer."""
        texts = [t for t in set(texts) if t and t not in self._text_ids]
        for start in range(0, len(texts), 4096):
            chunk = texts[start:start + 4096]
            for text, ids in zip(chunk, self.tokenizer(chunk, add_special_tokens=False).input_ids):
                self._text_ids[text] = ids

    def unit_ids(self, units: np.ndarray) -> list[int]:
        return [self.unit_base + int(u) for u in deduplicate(units)[0]]

    def utterance_unit_ids(self, utterance: Utterance) -> list[int]:
        """The unit ids of a whole utterance, remembered by its id and units."""
        key = (utterance.utterance_id, utterance.units.tobytes())
        if key not in self._unit_ids:
            self._unit_ids[key] = self.unit_ids(utterance.units)
        return self._unit_ids[key]

    def _join(self, kind: Kind, parts: list[tuple[str, list[int]]]) -> TrainingSequence:
        """Concatenate (modality, ids) parts; a marker is predicted with weight 1 (it says what comes next)."""
        ids, weights = [], []
        for modality, part in parts:
            weight = self.speech_weight if modality == "speech" else 1.0
            ids.extend(part)
            weights.extend([weight] * len(part))
        weights[0] = 0.0
        return TrainingSequence(kind, ids, weights)

    def asr_prompt(self, utterance: Utterance) -> list[int]:
        """"[Text]Transcribe the speech:[Speech]<units>[Text]": what transcription is asked with."""
        return [self.text_id] + self.text_ids(ASR_CUE) + [self.speech_id] + self.utterance_unit_ids(utterance) + [self.text_id]

    def speech_to_text(self, utterance: Utterance) -> TrainingSequence:
        """The ASR pair, its transcript closed by the end-of-text token so that transcription stops."""
        prompt = self.asr_prompt(utterance)
        cue = 1 + len(self.text_ids(ASR_CUE))
        return self._join("speech_to_text", [
            ("text", prompt[:cue]), ("speech", prompt[cue:-1]),
            ("text", prompt[-1:] + self.text_ids(utterance.text) + [self.end_id]),
        ])

    def continuation(self, utterance: Utterance) -> TrainingSequence:
        """A prefix utterance and its sentence's rest; the teacher reads the prefix and the rest as text."""
        rest = self.text_ids(" " + utterance.continuation)
        sequence = self._join("fact_continuation" if utterance.kind == "fact_prefix" else "continuation", [
            ("speech", [self.speech_id] + self.utterance_unit_ids(utterance)),
            ("text", [self.text_id] + rest),
        ])
        sequence.teacher_ids = self.text_ids(utterance.text) + rest
        sequence.distill_last = len(rest)
        sequence.state_pairs = [(len(sequence.ids) - len(rest) - 1, len(sequence.teacher_ids) - len(rest) - 1)]
        return sequence

    def entity_state(self, utterance: Utterance, rate_hz: float) -> TrainingSequence:
        """A name sentence or fact prefix spoken, its state at the entity's last unit paired with the backbone's
        at the entity's last token. The teacher's text is tokenized in two pieces cut at the entity's end, so
        that its last token is a token of its own (BPE pieces start at a space or a punctuation mark there anyway)."""
        first, last, end = self._entity_words(utterance)
        sequence = self._join("entity_state", [("speech", [self.speech_id] + self.utterance_unit_ids(utterance))])
        name = self.text_ids(utterance.text[:end])
        sequence.teacher_ids = name + self.text_ids(utterance.text[end:])
        sequence.state_pairs = [(1 + last_unit_of(utterance, first, last, rate_hz), len(name) - 1)]
        sequence.utterance_kind = utterance.kind
        return sequence

    def _entity_words(self, utterance: Utterance) -> tuple[int, int, int]:
        """The entity's first and last word and its end in characters (ValueError without an entity span)."""
        if utterance.entity is None:
            raise ValueError(f"{utterance.utterance_id}: neither a name sentence nor a fact prefix (no entity span)")
        start, end = utterance.entity
        words = [i for i, (a, b) in enumerate(utterance.word_spans) if a < end and b > start]
        return words[0], words[-1], end

    def spoken_entity(self, utterance: Utterance, rate_hz: float) -> TrainingSequence:
        """The entity's words spoken between the written words around it, then the continuation written; the
        teacher reads the same text cut at the entity's end (as `entity_state`'s), so the written tail after the
        entity is the same tokens in both and is distilled position by position."""
        first, last, end = self._entity_words(utterance)
        before = utterance.text[:utterance.word_spans[first][0]].rstrip()
        tail = self.text_ids(utterance.text[end:])
        if utterance.continuation:
            tail = tail + self.text_ids(" " + utterance.continuation)
        parts = [("text", [self.text_id] + self.text_ids(before))] if before else []
        parts += [("speech", [self.speech_id] + self.unit_ids(self._frames(utterance, rate_hz, first, last + 1))),
                  ("text", [self.text_id] + tail)]
        sequence = self._join("spoken_entity", parts)
        sequence.teacher_ids = self.text_ids(utterance.text[:end]) + tail
        sequence.distill_last = len(tail)
        sequence.utterance_kind = utterance.kind
        return sequence

    def _frames(self, utterance: Utterance, rate_hz: float, first_word: int, end_word: int) -> np.ndarray:
        """Units from the start of `first_word` (0 for the first) to the start of `end_word` (the end for
        the last): the silences between words go with the word before them."""
        start = 0 if first_word == 0 else int(np.floor(utterance.word_times[first_word][0] * rate_hz))
        end = utterance.units.size if end_word >= len(utterance.word_times) else \
            int(np.floor(utterance.word_times[end_word][0] * rate_hz))
        return utterance.units[start:max(end, start + 1)]

    def interleaved(self, utterance: Utterance, rate_hz: float, rng: random.Random) -> TrainingSequence:
        """Spans of 1..max_segment_words words, alternating modality, starting with either."""
        parts: list[tuple[str, list[int]]] = []
        modality = rng.choice(("speech", "text"))
        word = 0
        while word < len(utterance.word_spans):
            end = min(len(utterance.word_spans), word + rng.randint(1, self.max_segment_words))
            if modality == "speech":
                parts.append(("speech", [self.speech_id] + self.unit_ids(self._frames(utterance, rate_hz, word, end))))
            else:
                start_char = utterance.word_spans[word][0]
                end_char = utterance.word_spans[end - 1][1]
                text = utterance.text[start_char:end_char]
                parts.append(("text", [self.text_id] + self.text_ids(text if word == 0 else " " + text)))
            modality = "text" if modality == "speech" else "speech"
            word = end
        return self._join("interleaved", parts)

    def speech_only(self, utterance: Utterance) -> TrainingSequence:
        return self._join("speech_only", [("speech", [self.speech_id] + self.utterance_unit_ids(utterance))])

    def text(self, utterance: Utterance, rng: random.Random) -> TrainingSequence:
        """Text replay: with "[Text]" (the organism's T→T format) or plain (the backbone's, distilled from it)."""
        ids = self.text_ids(utterance.text)
        if rng.random() < 0.5:
            return self._join("text", [("text", [self.text_id] + ids)])
        sequence = self._join("text", [("text", ids)])
        sequence.teacher_ids = list(ids)
        sequence.distill_last = len(ids) - 1
        return sequence
