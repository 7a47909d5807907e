"""`hf-text`: any `transformers` causal LM by name or path, text prompts only (T→T).

The prompt is tokenized whole with the tokenizer's default special tokens, so Llama-2/3, Mistral and
Gemma get the BOS their own code adds, and GPT-2 or SmolLM2 none."""

from __future__ import annotations

from known_speech.loading import load_causal_lm

from .adapter import Adapter, register_adapter
from .model_input import Modality, ModelInput
from .prompt_input import text_model_input

__all__ = ["HFTextAdapter"]


@register_adapter
class HFTextAdapter(Adapter):
    name = "hf-text"
    modalities: tuple[Modality, ...] = ("text",)

    def __init__(self, model_name: str = "smollm2", device: str = "cpu", dtype: str = "auto"):
        super().__init__(model_name, device, dtype)
        self.model, self.tokenizer = load_causal_lm(model_name, dtype=self.dtype, device=device)

    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        self.check_modality(modality)
        return text_model_input(self.tokenizer, record)
