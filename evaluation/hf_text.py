"""`hf-text`: any `transformers` causal LM by name or path, text prompts only (T→T)."""

from __future__ import annotations

from known_speech.tracing.loading import load_causal_lm
from known_speech.tracing.prompts import subject_token_range

from .adapter import Adapter, Modality, ModelInput, register_adapter

__all__ = ["HFTextAdapter", "text_model_input"]


def text_model_input(tokenizer, record: dict, prefix_ids: list[int] = (), prefix_labels: list[str] = ()) -> ModelInput:
    """The written prompt as tokens, after optional marker tokens that stand for no text token."""
    prompt, subject = record["prompt"], record["subject"]
    encoding = tokenizer(prompt, add_special_tokens=False)
    ids = list(encoding["input_ids"])
    try:
        subject_start, subject_end = subject_token_range(tokenizer, prompt, subject)
    except ValueError as err:
        raise ValueError(f"known_id={record['known_id']}: field 'subject': {err}") from err
    offset = len(prefix_ids)
    text_tokens = [tokenizer.decode([i]) for i in ids]
    return ModelInput(
        known_id=int(record["known_id"]),
        modality="text",
        subject_range=(subject_start + offset, subject_end + offset),
        text_tokens=text_tokens,
        subject_text_range=(subject_start, subject_end),
        text_token_of_position=[None] * offset + list(range(len(ids))),
        labels=list(prefix_labels) + text_tokens,
        input_ids=list(prefix_ids) + ids,
    )


@register_adapter
class HFTextAdapter(Adapter):
    name = "hf-text"
    modalities: tuple[Modality, ...] = ("text",)

    def __init__(self, model_name: str = "smollm2", device: str = "cpu", dtype: str = "float32"):
        super().__init__(model_name, device, dtype)
        self.model, self.tokenizer = load_causal_lm(model_name, dtype=self.dtype, device=device)

    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        self.check_modality(modality)
        return text_model_input(self.tokenizer, record)
