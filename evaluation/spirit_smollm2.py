"""`spirit-smollm2`: the speech LM trained here (evaluation/organism), traced like Spirit LM.

Its inputs are Spirit LM's formats (the `spiritlm` adapter's code builds them): "[Text]" + prompt for text,
"[Speech]" + de-duplicated unit tokens + "[Text]" for speech, tokenized whole (SmolLM2's tokenizer adds no
BOS), each unit position linked through its time to the text token it voices, the subject's positions
those whose unit frames overlap the subject's time span. Units come from the delta's own Whisper k-means
tokenizer (or the row's stored units, when that tokenizer made them; another tokenizer's are refused).
Text is generated with the markers and every unit token banned, as Meta's code does for Spirit LM.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from known_speech.units import TEXT_MARKER, UnitProvenance, interleave_expressive

from .adapter import Adapter, register_adapter
from .model_input import Modality, ModelInput
from .organism.delta import MANIFEST, ORGANISMS, load_organism
from .prompt_input import text_model_input
from .spiritlm import record_units, speech_model_input, speech_token_ids

__all__ = ["SpiritSmolLM2Adapter"]


@register_adapter
class SpiritSmolLM2Adapter(Adapter):
    name = "spirit-smollm2"
    modalities: tuple[Modality, ...] = ("text", "speech")

    @classmethod
    def handles(cls, model: str) -> bool:
        return model in ORGANISMS or (Path(model) / MANIFEST).is_file()

    def __init__(self, model_name: str = "spirit-smollm2", device: str = "cpu", dtype: str = "auto"):
        super().__init__(model_name, device, dtype)
        self.model, self.tokenizer, self.delta = load_organism(model_name, self.dtype, device)
        self.speech_tokenizer = self.delta.unit_tokenizer()
        self.options = {"delta": self.delta.name, "unit_tokenizer": self.speech_tokenizer.name}

    def banned_token_ids(self, modality: Modality) -> list[int]:
        return speech_token_ids(self.tokenizer)

    def units(self, record: dict) -> tuple[np.ndarray, UnitProvenance, str]:
        return record_units(record, self.speech_tokenizer, str(self.delta.folder / "unit_tokenizer"))

    def describe(self) -> dict:
        manifest = self.delta.manifest
        return {**super().describe(), "delta": {"name": manifest["name"], "files": manifest["files"],
                                                "backbone": manifest["backbone"], "training": manifest["training"]},
                "unit_tokenizer": self.speech_tokenizer.provenance.to_dict()}

    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        self.check_modality(modality)
        text = text_model_input(self.tokenizer, record, prefix=TEXT_MARKER)
        if modality == "text":
            return text
        units, provenance, source = self.units(record)
        if units.size == 0:
            raise ValueError(f"known_id={record['known_id']}: field 'audio': no units (the audio is shorter than a frame)")
        model_input = speech_model_input(self.tokenizer, record, text, units, interleave_expressive(units),
                                         self.speech_tokenizer.rate_hz)
        model_input.metadata.update(units_source=source, units=provenance.to_dict())
        return model_input
