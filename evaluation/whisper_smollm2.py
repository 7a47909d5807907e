"""`whisper-smollm2`: the continuous-encoder organism trained here (evaluation/organism/continuous*), traced through
the `voxtral` row of the audio-LM table, as a user's real Voxtral checkpoint is.

The delta (LoRA, projector, control tokens' rows; organism.json with the sha256 of every file and of the GGUF,
Whisper's CTranslate2 file and tekken.json it was trained on) is applied once to the installed backbone and Whisper
tiny.en, into a `from_pretrained` folder that the `voxtral` adapter's own loading reads; prompts, audio positions,
generation and the answer token are that adapter's.
"""

from __future__ import annotations

import json
from pathlib import Path

from .adapter import Adapter, register_adapter
from .audio_lm import VoxtralAdapter
from .organism.delta import MANIFEST, ORGANISMS, OrganismDelta

__all__ = ["WhisperSmolLM2Adapter"]


@register_adapter
class WhisperSmolLM2Adapter(VoxtralAdapter):
    name = "whisper-smollm2"

    @classmethod
    def handles(cls, model: str) -> bool:
        if model in ORGANISMS:
            return model == "whisper-smollm2"
        manifest = Path(model) / MANIFEST
        return manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("kind") == "continuous"

    def __init__(self, model_name: str = "whisper-smollm2", device: str = "cpu", dtype: str = "auto",
                 instruction: str = ""):
        from .organism.continuous import materialise

        Adapter.__init__(self, model_name, device, dtype)  # names the model before anything loads
        self.delta = OrganismDelta.resolve(model_name)
        if self.delta.kind != "continuous":
            raise ValueError(f"--model {model_name}: a {self.delta.kind} organism; the whisper-smollm2 adapter reads "
                             "continuous ones (spirit-smollm2 is discrete)")
        super().__init__(str(materialise(self.delta)), device, dtype, instruction=instruction)
        self.model_name = model_name
        self.options = {**self.options, "delta": self.delta.name}

    def describe(self) -> dict:
        """The backbone GGUF, Whisper's file and the delta by sha256: what a result from these weights must say."""
        manifest = self.delta.manifest
        return {**super().describe(), **manifest["backbone"], "whisper": manifest["whisper"],
                "quantisation": "Q4_1 GGUF dequantised to float32; Whisper tiny.en float16 as float32; LoRA delta "
                                "(float16) merged",
                "delta": {"name": manifest["name"], "folder": str(self.delta.folder), "files": manifest["files"],
                          "training": manifest["training"]}}
