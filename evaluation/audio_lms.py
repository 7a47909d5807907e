"""transformers' audio-text models whose speech enters the decoder as continuous embeddings: one row per family.

A row says, as data, what differs between families; `audio_lm.AudioLMAdapter` is the one adapter that reads it:
- how the prompt is built: the base format where the release has a base model (audio placeholder, then the
  text the model continues), otherwise the model's own chat template (one user turn: the audio, or the written
  prompt for T→T, then the generation prompt);
- how many embedding positions the audio becomes: the downsampling the processor's length formula encodes,
  after Whisper-style log-mel frames at 100 Hz (hop 160 at 16 kHz);
- where the decoder that receives the merged embeddings lives, and which model generates text.
The audio embeddings themselves always come from the model's own forward (its `get_audio_features` and
masked_scatter merge), captured as they enter the language model. The rows' reference code is cited in the
README's support table (transformers 5.23, models/<family>/processing_*.py and modeling_*.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from known_speech.tracing.architectures import ArchitectureSpec, register_architecture

__all__ = ["AudioLayout", "AudioLMFamily", "AUDIO_LMS", "register_audio_lm", "family_of_config", "MEL_HZ"]

MEL_HZ = 100.0  # log-mel frames per second: hop 160 samples at 16 kHz


@dataclass(frozen=True)
class AudioLayout:
    """The processor's length formula: mel frames -> audio positions, as the encoder's downsampling steps.

    steps: (kernel, stride, padding) of each strided convolution or pooling after the mel frames, applied
    as out = (n + 2 * padding - kernel) // stride + 1; chunk_frames: the encoder's own chunking (each chunk's
    positions restart, and a full chunk becomes as many positions as the formula gives for it); padded: the
    processor pads the audio to whole chunks first, so `mel_frames` of speech become whole chunks' positions."""

    steps: tuple[tuple[int, int, int], ...]
    chunk_frames: int | None = None
    padded: bool = False  # the processor pads the audio to whole chunks: the last one too is a full chunk

    @property
    def frames_per_position(self) -> int:
        return math.prod(stride for _, stride, _ in self.steps)

    @property
    def rate_hz(self) -> float:
        """Audio positions per second of speech (nominal: the last of a chunk may cover fewer frames)."""
        return MEL_HZ / self.frames_per_position

    def _count(self, frames: int) -> int:
        for kernel, stride, padding in self.steps:
            frames = (frames + 2 * padding - kernel) // stride + 1
        return max(frames, 0)

    def count(self, mel_frames: int) -> int:
        """How many audio positions `mel_frames` become."""
        if self.chunk_frames is None:
            return self._count(mel_frames)
        if self.padded:
            return -(-mel_frames // self.chunk_frames) * self._count(self.chunk_frames)
        full, rest = divmod(mel_frames, self.chunk_frames)
        return full * self._count(self.chunk_frames) + (self._count(rest) if rest else 0)

    def spans_s(self, num_positions: int) -> np.ndarray:
        """(num_positions, 2) start and end, in seconds, of the speech each audio position encodes."""
        per_chunk = self._count(self.chunk_frames) if self.chunk_frames else num_positions
        index = np.arange(num_positions)
        chunk, within = np.divmod(index, max(per_chunk, 1))
        start = (chunk * (self.chunk_frames or 0) + within * self.frames_per_position).astype(float)
        end = start + self.frames_per_position
        if self.chunk_frames:
            end = np.minimum(end, (chunk + 1) * self.chunk_frames)
        return np.stack([start, end], axis=1) / MEL_HZ


@dataclass(frozen=True)
class AudioLMFamily:
    """One family of audio-text models in transformers."""

    adapter: str  # the --adapter name
    config_class: str  # the checkpoint's config class (the table's key)
    model_type: str  # its config.json's model_type (how a model folder is recognised)
    model_class: str  # the transformers class its checkpoints load with
    prompt: Literal["base", "chat"]
    layout: AudioLayout
    feature_mask: str  # the processor's output that marks real (unpadded) mel frames; "" where all are encoded
    # how the processor takes the audio: "text", its call with the prompt string (the audio token, which it expands)
    # and the waveform; "conversation", only inside the chat conversation, which the tokenizer itself encodes
    audio_input: Literal["text", "conversation"] = "text"
    base_format: str = ""  # base prompts: "{audio}" is where the processor's audio token goes
    text_model: str = ""  # the submodule that is the text-generating model ("thinker"); "" for the model itself
    load_kwargs: dict = field(default_factory=dict)  # e.g. no talker for the Omni models
    hub: tuple[str, ...] = ()  # real weights
    text_model_type: str = ""  # config.model_type of the text-generating model, where it is not the checkpoint's

    @property
    def decoder_model_type(self) -> str:
        """The ArchitectureSpec key of the model the tracer runs."""
        return self.text_model_type or self.model_type

    @property
    def language_model(self) -> str:
        """Inside the text-generating model: the decoder that receives the merged input embeddings."""
        return "model.language_model"

    def architecture(self) -> ArchitectureSpec:
        lm = self.language_model
        return ArchitectureSpec(embed=f"{lm}.embed_tokens", layers=f"{lm}.layers", mlp="mlp", attn="self_attn",
                                final_norm=f"{lm}.norm", unembed="lm_head", positions="rotary",
                                rotary=f"{lm}.rotary_emb")


AUDIO_LMS: dict[str, AudioLMFamily] = {}


def register_audio_lm(family: AudioLMFamily) -> AudioLMFamily:
    """Add a row (a plug-in's too): its adapter name works with --adapter once a class names it."""
    AUDIO_LMS[family.config_class] = family
    register_architecture(family.decoder_model_type, family.architecture())
    return family


def family_of_config(config) -> AudioLMFamily:
    name = type(config).__name__
    if name not in AUDIO_LMS:
        raise ValueError(f"config class {name}: no audio-LM family; supported: {sorted(AUDIO_LMS)} "
                         f"(add one with known_speech.evaluation.audio_lms.register_audio_lm)")
    return AUDIO_LMS[name]


# Whisper encoder (k3 s1 p1 and k3 s2 p1 convolutions) then 2x average pooling: 40 ms per position
_WHISPER_POOLED = AudioLayout(steps=((3, 2, 1), (2, 2, 0)))

QWEN2_AUDIO = register_audio_lm(AudioLMFamily(
    adapter="qwen2-audio", config_class="Qwen2AudioConfig", model_type="qwen2_audio",
    model_class="Qwen2AudioForConditionalGeneration", prompt="base", base_format="<|audio_bos|>{audio}<|audio_eos|>",
    layout=_WHISPER_POOLED, feature_mask="feature_attention_mask", hub=("Qwen/Qwen2-Audio-7B",)))
AUDIO_FLAMINGO_3 = register_audio_lm(AudioLMFamily(
    adapter="audio-flamingo-3", config_class="AudioFlamingo3Config", model_type="audioflamingo3",
    model_class="AudioFlamingo3ForConditionalGeneration", prompt="chat", layout=_WHISPER_POOLED,
    feature_mask="input_features_mask", hub=("nvidia/audio-flamingo-3-hf",)))
GLM_ASR = register_audio_lm(AudioLMFamily(
    adapter="glm-asr", config_class="GlmAsrConfig", model_type="glmasr", model_class="GlmAsrForConditionalGeneration",
    prompt="chat",
    # the encoder's k3 s1 p1 and k3 s2 p1 convolutions, then 4 frames merged into one: 80 ms per position
    layout=AudioLayout(steps=((3, 2, 1), (4, 4, 0))), feature_mask="input_features_mask",
    hub=("zai-org/GLM-ASR-Nano-2512",)))
QWEN2_5_OMNI = register_audio_lm(AudioLMFamily(
    adapter="qwen2.5-omni", config_class="Qwen2_5OmniConfig", model_type="qwen2_5_omni",
    model_class="Qwen2_5OmniForConditionalGeneration", prompt="chat", layout=_WHISPER_POOLED,
    feature_mask="feature_attention_mask", text_model="thinker",
    load_kwargs={"enable_audio_output": False}, hub=("Qwen/Qwen2.5-Omni-7B", "Qwen/Qwen2.5-Omni-3B"),
    text_model_type="qwen2_5_omni_thinker"))
QWEN3_OMNI = register_audio_lm(AudioLMFamily(
    adapter="qwen3-omni", config_class="Qwen3OmniMoeConfig", model_type="qwen3_omni_moe",
    model_class="Qwen3OmniMoeForConditionalGeneration",
    # 1 s chunks (n_window 50 x 2 mel frames), three k3 s2 p1 convolutions each: 13 positions a second
    prompt="chat", layout=AudioLayout(steps=((3, 2, 1), (3, 2, 1), (3, 2, 1)), chunk_frames=100),
    feature_mask="feature_attention_mask", text_model="thinker", load_kwargs={"enable_audio_output": False},
    hub=("Qwen/Qwen3-Omni-30B-A3B-Instruct",), text_model_type="qwen3_omni_moe_thinker"))
VOXTRAL = register_audio_lm(AudioLMFamily(
    adapter="voxtral", config_class="VoxtralConfig", model_type="voxtral", model_class="VoxtralForConditionalGeneration",
    # audio only through mistral-common's chat encoding, which pads it to whole 30 s chunks; per chunk the k3 s2 p1
    # convolution, then 4 frames stacked into one (the projector's reshape to intermediate_size = 4 x d_model):
    # 375 positions a chunk, 80 ms each
    prompt="chat", audio_input="conversation",
    layout=AudioLayout(steps=((3, 2, 1), (4, 4, 0)), chunk_frames=3000, padded=True), feature_mask="",
    hub=("mistralai/Voxtral-Mini-3B-2507", "mistralai/Voxtral-Small-24B-2507")))
