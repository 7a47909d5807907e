"""`qwen2-audio`: a model whose speech enters as continuous embeddings (Qwen2-Audio via `transformers`).

The prompt is the base model's format from its model card and processor (transformers,
models/qwen2_audio/processing_qwen2_audio.py): "<|audio_bos|><|AUDIO|><|audio_eos|>" followed by a text
suffix (the card's "Generate the caption in English:"; here empty by default, so the model continues the
spoken prompt, and recorded with every input). The processor expands <|AUDIO|> to one token per
40 ms: Whisper features at 100 frames/s, the encoder's stride-2 convolution ((n - 1) // 2 + 1) and 2x
pooling ((n - 2) // 2 + 1). The Qwen2 tokenizer adds no BOS. The audio encoder's outputs replace those
tokens; the tracer runs the language model on the merged input embeddings, captured as they enter it,
and corrupts the embedding frames of the subject's time span.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from known_speech.tracing.architectures import ArchitectureSpec, register_architecture

from .adapter import Adapter, register_adapter
from .model_input import Modality, ModelInput
from .prompt_input import record_answer, text_model_input
from .speech_links import subject_frames, text_tokens_of_frames

__all__ = ["Qwen2AudioAdapter", "AUDIO_RATE_HZ", "SPEECH_PROMPT"]

AUDIO_RATE_HZ = 25.0  # 100 Hz mel frames, stride-2 convolution, then 2x average pooling
SPEECH_PROMPT = "<|audio_bos|><|AUDIO|><|audio_eos|>"

register_architecture(
    "qwen2_audio",
    ArchitectureSpec(
        embed="model.language_model.embed_tokens",
        layers="model.language_model.layers",
        mlp="mlp",
        attn="self_attn",
        final_norm="model.language_model.norm",
        unembed="lm_head",
        positions="rotary",
        rotary="model.language_model.rotary_emb",
    ),
)


@register_adapter
class Qwen2AudioAdapter(Adapter):
    name = "qwen2-audio"
    modalities: tuple[Modality, ...] = ("text", "speech")

    @classmethod
    def handles(cls, model: str) -> bool:
        config = Path(model) / "config.json"
        if config.exists():
            return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "qwen2_audio"
        return "qwen2-audio" in model.lower()

    def __init__(self, model_name: str = "Qwen/Qwen2-Audio-7B", device: str = "cpu", dtype: str = "auto",
                 text_suffix: str = ""):
        super().__init__(model_name, device, dtype)
        self.text_suffix = text_suffix
        self.options = {"text_suffix": text_suffix}
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        self.processor = AutoProcessor.from_pretrained(model_name)
        self.tokenizer = self.processor.tokenizer
        self.model = Qwen2AudioForConditionalGeneration.from_pretrained(model_name, dtype=self.dtype).to(device).eval()

    @torch.no_grad()
    def merged_embeddings(self, inputs) -> torch.Tensor:
        """(positions, hidden) input embeddings with the audio features merged in by the model itself."""
        captured: dict[str, torch.Tensor] = {}

        def capture(module, args, kwargs):
            captured["inputs_embeds"] = kwargs["inputs_embeds"]

        handle = self.model.model.language_model.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            self.model.model(**inputs)
        finally:
            handle.remove()
        return captured["inputs_embeds"][0]

    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        self.check_modality(modality)
        if modality == "text":
            return text_model_input(self.tokenizer, record)
        from known_speech.audio import TARGET_SAMPLE_RATE, waveform_of  # audio libraries only where audio is decoded

        known_id = int(record["known_id"])
        prompt_text = SPEECH_PROMPT + self.text_suffix
        inputs = self.processor(text=prompt_text, audio=[waveform_of(record["audio"])],
                                sampling_rate=TARGET_SAMPLE_RATE, return_tensors="pt").to(self.device)
        input_ids = inputs["input_ids"][0].tolist()
        audio_token_id = self.model.config.audio_token_id
        audio_positions = [p for p, i in enumerate(input_ids) if i == audio_token_id]
        first_audio, num_audio = audio_positions[0], len(audio_positions)
        frame_start, frame_end = subject_frames(record, AUDIO_RATE_HZ)
        frame_end = min(frame_end, num_audio)
        if frame_start >= frame_end:
            raise ValueError(f"known_id={known_id}: field 'subject_time_span' lies past the {num_audio} audio frames")
        text = text_model_input(self.tokenizer, record)
        links = text_tokens_of_frames(np.arange(num_audio), num_audio, AUDIO_RATE_HZ, record["words"],
                                      text.text_char_spans)
        suffix = len(input_ids) - first_audio - num_audio
        labels = [self.tokenizer.decode([i]) for i in input_ids]
        labels[first_audio:first_audio + num_audio] = [f"audio@{k / AUDIO_RATE_HZ:.2f}s" for k in range(num_audio)]
        return ModelInput(
            known_id=known_id,
            modality="speech",
            subject_range=(first_audio + frame_start, first_audio + frame_end),
            text_tokens=text.text_tokens,
            subject_text_range=text.subject_text_range,
            text_token_of_position=[None] * first_audio + links + [len(text.text_tokens) - 1] * suffix,
            labels=labels,
            answer=record_answer(self.tokenizer, prompt_text, record),
            prompt_text=prompt_text,
            bos=self.tokenizer.bos_token_id is not None and input_ids[0] == self.tokenizer.bos_token_id,
            inputs_embeds=self.merged_embeddings(inputs),
            pieces=self.tokenizer.convert_ids_to_tokens(input_ids),
            text_char_spans=text.text_char_spans,
            metadata={"num_audio_frames": num_audio, "text_suffix": self.text_suffix},
        )
