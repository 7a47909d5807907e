"""The adapter of transformers' audio-text models (`audio_lms` holds their table), and its named variants.

Speech: the model's own processor builds the ids from the prompt (the family's base format, or the model's
chat template with the audio as the user's turn) and the waveform, expanding the audio marker to as many
positions as its length formula gives (Voxtral's processor takes the audio only inside the conversation, which
mistral-common's tokenizer encodes; the audio goes in as a lossless float WAV); the model's own forward computes
the audio features and merges them (`get_audio_features`, masked_scatter), and the merged input embeddings are
captured by a forward pre-hook as they enter the language model. The tracer runs that language model on them
and corrupts the audio positions that encode the subject's time span. Text: the written prompt in the same
format, as ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from .adapter import Adapter, register_adapter
from .audio_lms import (AUDIO_FLAMINGO_3, GLM_ASR, QWEN2_5_OMNI, QWEN2_AUDIO, QWEN3_OMNI, VOXTRAL, AudioLMFamily,
                        family_of_config)
from .model_input import Modality, ModelInput
from .prompt_input import record_answer, text_model_input
from .speech_links import text_tokens_of_times

__all__ = ["AudioLMAdapter", "Qwen2AudioAdapter", "AudioFlamingo3Adapter", "GlmAsrAdapter", "Qwen25OmniAdapter",
           "Qwen3OmniAdapter", "VoxtralAdapter"]


class AudioLMAdapter(Adapter):
    """A continuous-encoder audio LM of the `audio_lms` table; subclasses name their family's row.

    Options (recorded with every result): base_format, a base prompt around the audio ("{audio}" is where the
    processor's audio token goes; the family's by default); text_suffix, the text after it (the base model
    card's "Generate the caption in English:"; empty by default, so the model continues the spoken prompt);
    instruction, text after the audio or the written prompt in a chat prompt's user turn (empty by default)."""

    family: ClassVar[AudioLMFamily]
    modalities: tuple[Modality, ...] = ("text", "speech")

    @classmethod
    def handles(cls, model: str) -> bool:
        config = Path(model) / "config.json"
        if config.exists():
            return json.loads(config.read_text(encoding="utf-8")).get("model_type") == cls.family.model_type
        return cls.family.adapter in model.lower()

    def __init__(self, model_name: str | None = None, device: str = "cpu", dtype: str = "auto", text_suffix: str = "",
                 instruction: str = "", base_format: str = ""):
        family = self.family
        model_name = model_name or family.hub[0]
        super().__init__(model_name, device, dtype)
        base, chat = {"text_suffix": text_suffix, "base_format": base_format}, {"instruction": instruction}
        for key, value in (chat if family.prompt == "base" else base).items():
            if value:
                raise ValueError(f"--adapter-option {key}={value!r}: {self.name} prompts are in its {family.prompt} "
                                 f"format, which takes {' and '.join(base if family.prompt == 'base' else chat)}")
        self.text_suffix, self.instruction = text_suffix, instruction
        self.base_format = base_format or family.base_format
        self.options = {"text_suffix": text_suffix, "base_format": self.base_format} if family.prompt == "base" else chat
        import transformers

        self.processor = transformers.AutoProcessor.from_pretrained(model_name)
        self.tokenizer = self.processor.tokenizer
        if type(self.tokenizer).__name__ == "MistralCommonBackend":  # no offsets; control tokens only as ids
            from .mistral_tokenizer import MistralChatTokenizer

            self.tokenizer = MistralChatTokenizer(self.tokenizer)
        if family.audio_input == "conversation":  # its chat encoding pads a batch on the tokenizer's side
            self.processor.tokenizer.padding_side = "left"
        loaded = getattr(transformers, family.model_class).from_pretrained(model_name, dtype=self.dtype,
                                                                           **family.load_kwargs)
        if family_of_config(loaded.config) is not family:
            raise ValueError(f"--model {model_name}: a {type(loaded.config).__name__} checkpoint, not one of "
                             f"adapter {self.name!r} ({family.config_class})")
        # the model that generates text (the Omni models' thinker: text output only, no talker)
        self.model = (loaded.get_submodule(family.text_model) if family.text_model else loaded).to(device).eval()

    # -- prompts ---------------------------------------------------------------------------------
    def _conversation(self, content: list[dict]) -> list[dict]:
        """One user turn: the audio or the written prompt, then the instruction where there is one."""
        if self.instruction:
            content = [*content, {"type": "text", "text": self.instruction}]
        return [{"role": "user", "content": content}]

    def _chat(self, content: list[dict]) -> str:
        if self.family.audio_input == "conversation":  # the string the tokenizer's own chat encoding decodes to
            ids = self.processor.tokenizer.apply_chat_template(self._conversation(content), tokenize=True,
                                                               return_dict=False)
            return self.tokenizer.decode(ids)
        return self.processor.apply_chat_template(self._conversation(content), add_generation_prompt=True,
                                                  tokenize=False)

    def speech_prompt(self) -> str:
        """The string the processor expands: its audio token stands for the whole audio (a "conversation" family's
        processor expands no string: `_speech_inputs` writes its prompt out from the ids)."""
        if self.family.prompt == "base":
            return self.base_format.replace("{audio}", self.processor.audio_token) + self.text_suffix
        return self._chat([{"type": "audio"}])

    def text_prompt_parts(self, prompt: str) -> tuple[str, str]:
        """The text before and after the written prompt in a T→T input of this format."""
        if self.family.prompt == "base":
            return "", ""
        marker = "\u0000PROMPT\u0000"
        before, _, after = self._chat([{"type": "text", "text": marker}]).partition(marker)
        return before, after

    @property
    def answer_separator(self) -> str:
        """What comes between the prompt and the attribute: a space continues a base prompt; a chat reply starts
        the assistant's turn, right after its header."""
        return " " if self.family.prompt == "base" else ""

    # -- inputs ----------------------------------------------------------------------------------
    @torch.no_grad()
    def merged_embeddings(self, inputs) -> torch.Tensor:
        """(positions, hidden) input embeddings as the model's own forward merges the audio features into them."""
        captured: dict[str, torch.Tensor] = {}

        def capture(module, args, kwargs):
            captured["inputs_embeds"] = kwargs["inputs_embeds"]

        language_model = self.model.get_submodule(self.family.language_model)
        handle = language_model.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            self.model.model(**inputs)
        finally:
            handle.remove()
        return captured["inputs_embeds"][0]

    def _processed(self, prompt_texts: list[str], waveforms: list[np.ndarray]):
        """The processor's inputs for a batch (left-padded): its call on the prompt strings and waveforms, or, for a
        "conversation" family, its chat encoding of one user turn per waveform."""
        from known_speech.audio import TARGET_SAMPLE_RATE

        if self.family.audio_input == "conversation":
            conversations = [self._conversation([_audio_item(waveform)]) for waveform in waveforms]
            return self.processor.apply_chat_template(conversations).to(self.device)
        return self.processor(text=prompt_texts, audio=waveforms, sampling_rate=TARGET_SAMPLE_RATE,
                              text_kwargs={"padding": True, "padding_side": "left"}, return_tensors="pt").to(self.device)

    def _speech_inputs(self, waveform: np.ndarray, known_id: int) -> tuple[object, str]:
        """The processor's inputs for one waveform and the prompt string (the audio token once, for the whole audio),
        refused where the prompt has no audio marker: the audio would never reach the model."""
        audio_token = self.processor.audio_token
        if self.family.audio_input == "conversation":
            audio_id = self.tokenizer.convert_tokens_to_ids(audio_token)
            marker = self.tokenizer.audio_marker()
            if marker != audio_id:
                marked = "nothing" if marker is None else repr(self.tokenizer.convert_ids_to_tokens(marker))
                raise ValueError(f"known_id={known_id}: the {self.name} prompt has no audio marker {audio_token!r} (id "
                                 f"{audio_id}): the tokenizer's chat encoding marks audio with {marked}, so the audio "
                                 f"would never reach the model; fix the tokenizer file's audio section and audio token")
            inputs = self._processed([], [waveform])
            ids = inputs["input_ids"][0].tolist()
            audio = [p for p, i in enumerate(ids) if i == audio_id]
            return inputs, self.tokenizer.decode(ids[:audio[0] + 1] + ids[audio[-1] + 1:])
        prompt_text = self.speech_prompt()
        if audio_token not in prompt_text:
            where = "--adapter-option base_format" if self.family.prompt == "base" else "the model's chat template"
            raise ValueError(f"known_id={known_id}: the {self.name} prompt {prompt_text!r} has no audio marker "
                             f"{audio_token!r}, so the audio would never reach the model; fix {where}")
        return self._processed([prompt_text], [waveform]), prompt_text

    def _mel_frames(self, inputs) -> int:
        """The mel frames the encoder reads: those its mask marks real, else all (chunks x frames)."""
        if self.family.feature_mask:
            return int(inputs[self.family.feature_mask].sum())
        features = inputs["input_features"]
        return int(features.shape[0] * features.shape[-1])

    def audio_positions(self, input_ids: list[int], mel_frames: int, known_id: int) -> tuple[int, int]:
        """[start, end) of the audio positions: one run of the audio token, as long as the family's length
        formula makes `mel_frames`."""
        audio_id = self.tokenizer.convert_tokens_to_ids(self.processor.audio_token)
        positions = [p for p, i in enumerate(input_ids) if i == audio_id]
        expected = self.family.layout.count(mel_frames)
        start, end = positions[0], positions[-1] + 1
        if end - start != len(positions) or len(positions) != expected:
            raise ValueError(f"known_id={known_id}: {len(positions)} audio positions in {end - start}, but the "
                             f"{self.name} length formula gives {expected} for {mel_frames} mel frames")
        return start, end

    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        self.check_modality(modality)
        if modality == "text":
            return self._text_input(record)
        from known_speech.audio import waveform_of  # audio libraries only where audio is decoded

        known_id = int(record["known_id"])
        waveform = waveform_of(record["audio"])
        inputs, prompt_text = self._speech_inputs(waveform, known_id)
        input_ids = inputs["input_ids"][0].tolist()
        mel_frames = self._mel_frames(inputs)
        first, end = self.audio_positions(input_ids, mel_frames, known_id)
        spans = self.family.layout.spans_s(end - first)
        subject_start, subject_end = record["subject_time_span"]
        subject = np.flatnonzero((spans[:, 0] < subject_end) & (subject_start < spans[:, 1]))
        if not subject.size:
            raise ValueError(f"known_id={known_id}: field 'subject_time_span' {record['subject_time_span']} lies "
                             f"past the {end - first} audio positions ({spans[-1, 1]:.2f} s)")
        text = text_model_input(self.tokenizer, record)
        links = text_tokens_of_times(spans.mean(axis=1), record["words"], text.text_char_spans)
        last = len(text.text_tokens) - 1
        labels = [self.tokenizer.decode([i]) for i in input_ids]
        labels[first:end] = [f"audio@{start:.2f}s" for start in spans[:, 0]]
        return ModelInput(
            known_id=known_id,
            modality="speech",
            subject_range=(first + int(subject[0]), first + int(subject[-1]) + 1),
            text_tokens=text.text_tokens,
            subject_text_range=text.subject_text_range,
            # the template's tokens after the audio stand, like the written prompt's last token, for its end
            text_token_of_position=[None] * first + links + [last] * (len(input_ids) - end),
            labels=labels,
            answer=record_answer(self.tokenizer, prompt_text, record, self.answer_separator),
            prompt_text=prompt_text,
            bos=self.tokenizer.bos_token_id is not None and input_ids[0] == self.tokenizer.bos_token_id,
            inputs_embeds=self.merged_embeddings(inputs),
            pieces=self.tokenizer.convert_ids_to_tokens(input_ids),
            text_char_spans=text.text_char_spans,
            answer_separator=self.answer_separator,
            audio=waveform,
            metadata={"num_audio_frames": end - first, "audio_positions": [first, end], "mel_frames": mel_frames,
                      "prompt_format": self.family.prompt, **self.options},
        )

    def _text_input(self, record: dict) -> ModelInput:
        before, after = self.text_prompt_parts(record["prompt"])
        model_input = text_model_input(self.tokenizer, record, prefix=before, suffix=after,
                                       separator=self.answer_separator)
        model_input.metadata.update({"prompt_format": self.family.prompt, **self.options})
        return model_input

    def reference_input_ids(self, record: dict, modality: Modality) -> list[int] | None:
        """A "conversation" family's written prompt: the processor's own chat encoding of the user turn."""
        if modality != "text" or self.family.audio_input != "conversation":
            return None
        conversation = self._conversation([{"type": "text", "text": record["prompt"]}])
        return self.processor.apply_chat_template([conversation])["input_ids"][0].tolist()

    # -- generation -------------------------------------------------------------------------------
    def generation_settings(self) -> dict:
        generator = f"{self.family.text_model}.generate" if self.family.text_model else "generate"
        config = self.model.generation_config
        return {"generate": f"{self.family.model_class}.{generator}", "output": "text",
                "speech_inputs": "processor ids + audio features (the model merges them)",
                "batching": "left-padded batches; a prompt that the padded batch gives other mel frames or audio "
                            "positions than it has alone is generated alone",
                "eos_token_id": config.eos_token_id, "suppress_tokens": config.suppress_tokens,
                "bad_words_ids": config.bad_words_ids}

    def _as_alone(self, inputs, row: int, item: ModelInput) -> bool:
        """Whether the padded batch gives `item` the input it has alone: as many mel frames and audio positions.
        Whisper's feature extractor rescales its sample mask to frames by the batch's padded length
        (`feature_extraction_whisper.py:334-340`), so a shorter audio in a batch can gain a frame, and with it,
        by the length formula, an audio position."""
        if self.family.feature_mask and int(inputs[self.family.feature_mask][row].sum()) != item.metadata["mel_frames"]:
            return False
        audio_id = self.tokenizer.convert_tokens_to_ids(self.processor.audio_token)
        return int((inputs["input_ids"][row] == audio_id).sum()) == item.metadata["num_audio_frames"]

    @torch.no_grad()
    def generate_batch(self, model_inputs: list[ModelInput], max_new_tokens: int) -> list[str]:
        """Speech: the model's own `generate` on its processor's left-padded batch (ids, audio features and their
        masks), so that the model merges the audio itself; text: the ids, as every adapter does."""
        if not model_inputs or model_inputs[0].modality == "text":
            return super().generate_batch(model_inputs, max_new_tokens)
        inputs = self._processed([item.prompt_text for item in model_inputs], [item.audio for item in model_inputs])
        alone = [row for row, item in enumerate(model_inputs) if not self._as_alone(inputs, row, item)]
        if alone and len(model_inputs) > 1:
            together = [row for row in range(len(model_inputs)) if row not in alone]
            texts = dict(zip(together, self.generate_batch([model_inputs[row] for row in together], max_new_tokens)))
            texts.update({row: self.generate_batch([model_inputs[row]], max_new_tokens)[0] for row in alone})
            return [texts[row] for row in range(len(model_inputs))]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        prompt_length = inputs["input_ids"].shape[1]
        return [self.tokenizer.decode(row[prompt_length:], skip_special_tokens=True) for row in output]


@register_adapter
class Qwen2AudioAdapter(AudioLMAdapter):
    name = "qwen2-audio"
    family = QWEN2_AUDIO


@register_adapter
class AudioFlamingo3Adapter(AudioLMAdapter):
    name = "audio-flamingo-3"
    family = AUDIO_FLAMINGO_3


@register_adapter
class GlmAsrAdapter(AudioLMAdapter):
    name = "glm-asr"
    family = GLM_ASR


@register_adapter
class Qwen25OmniAdapter(AudioLMAdapter):
    name = "qwen2.5-omni"
    family = QWEN2_5_OMNI


@register_adapter
class Qwen3OmniAdapter(AudioLMAdapter):
    name = "qwen3-omni"
    family = QWEN3_OMNI


@register_adapter
class VoxtralAdapter(AudioLMAdapter):
    name = "voxtral"
    family = VOXTRAL


def _audio_item(waveform: np.ndarray) -> dict:
    """A conversation's audio item for a waveform: base64 of a 32-bit float WAV, which mistral-common reads back to
    the same float32 samples (transformers' path items re-encode a file in its own format, 16-bit for WAV)."""
    import base64
    import io

    import soundfile

    from known_speech.audio import TARGET_SAMPLE_RATE

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(waveform, dtype=np.float32), TARGET_SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return {"type": "audio", "base64": base64.b64encode(buffer.getvalue()).decode("ascii")}
