"""Inputs made wrong on purpose, so that a measure of S→T (or T→T) can show that it fails when the input does not
carry the subject: an adapter wrapped so that every prompt it prepares has

    template_only   the subject's positions removed: a model that can answer from the template alone
    shuffled        the speech positions (those that voice the prompt's words: units, or audio frames) in a random
                    order, markers and instructions left where they are

Generation reads only the ids or embeddings; the positions of a control's input stand for no text token.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np

from .model_input import Modality, ModelInput

__all__ = ["Control", "ControlledAdapter", "controlled"]

Control = Literal["template_only", "shuffled"]


def _kept(model_input: ModelInput, order: list[int]) -> ModelInput:
    """The input with its positions in `order` (some left out, or permuted); the subject range is where the first
    kept position of the old subject, or what follows it, now is."""
    start, end = model_input.subject_range
    subject = next((k for k, p in enumerate(order) if p >= start), len(order) - 1)
    ids = [model_input.input_ids[p] for p in order] if model_input.input_ids is not None else None
    embeds = model_input.inputs_embeds[order] if model_input.inputs_embeds is not None else None
    return replace(model_input, input_ids=ids, inputs_embeds=embeds, text_token_of_position=[None] * len(order),
                   labels=[""] * len(order), pieces=[], subject_range=(subject, subject + 1),
                   metadata={**model_input.metadata, "control": "input changed on purpose"})


def template_only(model_input: ModelInput) -> ModelInput:
    start, end = model_input.subject_range
    return _kept(model_input, [p for p in range(model_input.length) if not start <= p < end])


def shuffled(model_input: ModelInput, seed: int) -> ModelInput:
    speech = [p for p, k in enumerate(model_input.text_token_of_position) if k is not None]
    order = list(range(model_input.length))
    for position, source in zip(speech, np.random.default_rng(seed).permutation(speech)):
        order[position] = int(source)
    return _kept(model_input, order)


class ControlledAdapter:
    """`adapter` with `control` applied to every input of `modality` it prepares; everything else is the adapter's."""

    def __init__(self, adapter, control: Control, modality: Modality = "speech", seed: int = 0):
        if control not in ("template_only", "shuffled"):
            raise ValueError(f"control={control!r}: choose template_only or shuffled")
        self._adapter, self.control, self.control_modality, self.seed = adapter, control, modality, seed

    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        model_input = self._adapter.prepare(record, modality)
        if modality != self.control_modality:
            return model_input
        if self.control == "template_only":
            return template_only(model_input)
        return shuffled(model_input, self.seed + int(record["known_id"]))

    def __getattr__(self, name: str):
        return getattr(self._adapter, name)


def controlled(adapter, control: Control, modality: Modality = "speech", seed: int = 0) -> ControlledAdapter:
    return ControlledAdapter(adapter, control, modality, seed)
