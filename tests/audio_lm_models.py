"""Tiny random audio-text models of transformers' real classes, saved with real processors, as `from_pretrained`
folders are: per family a WhisperFeatureExtractor (the real feature extractor of every family here), the
SmolLM2 byte-level BPE tokenizer with the special tokens that family's processor expects (and, as the Hub's
tokenizers do, the token attributes the Omni processors read), and the family's chat template.

The chat templates are the models' own, as their conversion scripts in transformers write them (Audio
Flamingo 3: models/audioflamingo3/convert_audioflamingo3_to_hf.py, GLM-ASR: models/glmasr/
convert_glmasr_weights_to_hf.py) or as their Hub repositories ship them (Qwen2.5-Omni, Qwen3-Omni: the
audio item as `<|audio_bos|><|AUDIO|><|audio_eos|>` / `<|audio_start|><|audio_pad|><|audio_end|>` in a
Qwen chat turn, with the default system prompt where the release has one).

Voxtral has no chat template: its processor encodes conversations through mistral-common's tokenizer, read from a
tekken.json. The tests write one with the package's `write_tekken` (evaluation/organism/continuous.py): the
byte-level BPE of SmolLM2's merges in mistral-common's format (the 256 bytes first, then each merge's bytes by
rank), the special tokens where Voxtral's processor and mistral-common look for them ([AUDIO] at id 24, processing_voxtral.py:86), and the release's audio section (16 kHz,
12.5 tokens a second, 128 mel bins, hop 160, window 400, 30 s chunks).
"""

from __future__ import annotations

from pathlib import Path

import torch

from known_speech.evaluation.organism.continuous import encoder_audio_section, write_tekken

__all__ = ["FAMILIES", "save_tiny_audio_lm", "CHAT_TEMPLATES", "write_tekken", "TEKKEN_AUDIO"]

# text decoder of every tiny model: 2 layers, peaked enough (initializer_range) that the self-checks discriminate
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            initializer_range=0.5)
WHISPER = dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128)
ENCODER = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_mel_bins=128)
VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
MROPE = dict(rope_type="default", mrope_section=[2, 3, 3], rope_theta=10000.0)

_QWEN_CHAT = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n{SYSTEM}<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content %}{AUDIO}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_TEMPLATES = {
    "audio-flamingo-3": (
        "{% if messages[0]['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "{% endif %}"
        "{% for m in messages if m['content'] is not none %}"
        "<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}"
        "{{ m['content'] }}"
        "{% else %}"
        "{% set audio = namespace(found=False) %}"
        "{% set text_buf = namespace(v='') %}"
        "{% for c in m['content'] %}"
        "{% if c.get('type') == 'audio' or 'audio' in c %}"
        "{% set audio.found = True %}"
        "{% elif c.get('type') == 'text' or 'text' in c %}"
        "{% set text_buf.v = text_buf.v + c['text'] %}"
        "{% endif %}"
        "{% endfor %}"
        "{% if audio.found %}{{ '<sound>' }}{% endif %}{{ text_buf.v }}"
        "{% endif %}"
        "<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}"
        "<|im_start|>assistant\n"
        "{% endif %}"
    ),
    "glm-asr": """{%- macro to_text(content) -%}
{%- if content is string -%}
{{- content -}}
{%- elif content is iterable and content is not mapping -%}
{%- for item in content -%}
{%- if item is mapping and item.type == 'text' and item.text is defined -%}
{{- item.text -}}
{%- elif item is mapping and (item.type == 'audio' or 'audio' in item) -%}
<|begin_of_audio|><|pad|><|end_of_audio|><|user|>
{% elif item is string -%}
{{- item -}}
{%- endif -%}
{%- endfor -%}
{%- else -%}
{{- content -}}
{%- endif -%}
{%- endmacro -%}
{%- for m in messages -%}
{%- if m.role == 'system' -%}
<|system|>
{{ to_text(m.content) | trim }}
{%- elif m.role == 'user' -%}
<|user|>
{{ to_text(m.content) | trim }}
{%- elif m.role == 'assistant' -%}
<|assistant|>
{{ to_text(m.content) | trim }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|assistant|>
{% endif -%}""",
    "qwen2.5-omni": _QWEN_CHAT.replace("{AUDIO}", "<|audio_bos|><|AUDIO|><|audio_eos|>").replace(
        "{SYSTEM}", "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
                    "auditory and visual inputs, as well as generating text and speech."),
    "qwen3-omni": _QWEN_CHAT.replace("{AUDIO}", "<|audio_start|><|audio_pad|><|audio_end|>").replace(
        "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n{SYSTEM}<|im_end|>\n{% endif %}", ""),
}

# the tokens each family's processor and config name: (added special tokens, tokenizer attributes)
_QWEN25_OMNI_TOKENS = {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
                       "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
                       "vision_eos_token": "<|vision_eos|>"}
_QWEN3_OMNI_TOKENS = {"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
                      "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
                      "vision_eos_token": "<|vision_end|>"}
_TOKENS = {
    "qwen2-audio": (["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"], {}),
    "audio-flamingo-3": (["<|im_start|>", "<|im_end|>", "<sound>"], {}),
    "glm-asr": (["<|system|>", "<|user|>", "<|assistant|>", "<|begin_of_audio|>", "<|pad|>", "<|end_of_audio|>"], {}),
    "qwen2.5-omni": (["<|im_start|>", "<|im_end|>", *_QWEN25_OMNI_TOKENS.values()], _QWEN25_OMNI_TOKENS),
    "qwen3-omni": (["<|im_start|>", "<|im_end|>", *_QWEN3_OMNI_TOKENS.values()], _QWEN3_OMNI_TOKENS),
}
FAMILIES = (*_TOKENS, "voxtral")

# mistral-common's tekken.json of SmolLM2's BPE, with the release's audio section (128 mel bins): the package's own
# writer (whisper-smollm2 carries one; evaluation/organism/continuous.py)
TEKKEN_AUDIO = encoder_audio_section(128)


def _tokenizer(smollm2_tokenizer, folder: Path, family: str):
    from transformers import AutoTokenizer

    if family == "voxtral":
        from transformers import MistralCommonBackend

        write_tekken(smollm2_tokenizer, folder / "tekken.json")
        return MistralCommonBackend.from_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    tokens, attributes = _TOKENS[family]
    tokenizer = AutoTokenizer.from_pretrained(folder, extra_special_tokens=attributes) if attributes else \
        AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(tokens, special_tokens=True)
    return tokenizer


def _processor(family: str, tokenizer):
    import transformers
    from transformers import WhisperFeatureExtractor

    features = WhisperFeatureExtractor(feature_size=128)
    template = CHAT_TEMPLATES.get(family)
    if family == "qwen2-audio":
        return transformers.Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer)
    if family == "audio-flamingo-3":
        return transformers.AudioFlamingo3Processor(feature_extractor=features, tokenizer=tokenizer, chat_template=template)
    if family == "glm-asr":
        return transformers.GlmAsrProcessor(feature_extractor=features, tokenizer=tokenizer, chat_template=template)
    if family == "voxtral":
        return transformers.VoxtralProcessor(feature_extractor=features, tokenizer=tokenizer)
    omni = transformers.Qwen2_5OmniProcessor if family == "qwen2.5-omni" else transformers.Qwen3OmniMoeProcessor
    return omni(image_processor=transformers.Qwen2VLImageProcessor(), video_processor=transformers.Qwen2VLVideoProcessor(),
                feature_extractor=features, tokenizer=tokenizer, chat_template=template)


def _model(family: str, tokenizer):
    import transformers

    text = dict(TEXT, vocab_size=len(tokenizer))
    if family == "voxtral":  # the projector stacks intermediate_size / hidden_size = 4 encoder frames, as the release
        config = transformers.VoxtralConfig(audio_config=dict(ENCODER, intermediate_size=4 * ENCODER["hidden_size"]),
                                            text_config=dict(model_type="llama", head_dim=16, **text), audio_token_id=24)
        return transformers.VoxtralForConditionalGeneration(config)
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in _TOKENS[family][1].items()}
    if family == "qwen2-audio":
        config = transformers.Qwen2AudioConfig(audio_config=WHISPER, text_config=dict(model_type="qwen2", **text),
                                               audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
        return transformers.Qwen2AudioForConditionalGeneration(config)
    if family == "audio-flamingo-3":
        config = transformers.AudioFlamingo3Config(audio_config=ENCODER, text_config=dict(model_type="qwen2", **text),
                                                   audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"))
        return transformers.AudioFlamingo3ForConditionalGeneration(config)
    if family == "glm-asr":
        config = transformers.GlmAsrConfig(audio_config=ENCODER, text_config=dict(model_type="llama", **text),
                                           audio_token_id=tokenizer.convert_tokens_to_ids("<|pad|>"))
        return transformers.GlmAsrForConditionalGeneration(config)
    tokens = dict(audio_token_id=ids["audio_token"], image_token_id=ids["image_token"], video_token_id=ids["video_token"],
                  audio_start_token_id=ids["audio_bos_token"], vision_start_token_id=ids["vision_bos_token"])
    if family == "qwen2.5-omni":
        thinker = dict(audio_config=dict(WHISPER, output_dim=64), vision_config=VISION,
                       text_config=dict(text, rope_parameters=MROPE), initializer_range=TEXT["initializer_range"],
                       audio_end_token_id=ids["audio_eos_token"],
                       **{name.replace("_id", "_index") if name in ("audio_token_id", "image_token_id", "video_token_id")
                          else name: value for name, value in tokens.items()})
        config = transformers.Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False)
        return transformers.Qwen2_5OmniForConditionalGeneration(config)
    thinker = dict(audio_config=dict(WHISPER, output_dim=64, downsample_hidden_size=16),
                   vision_config=dict(VISION, deepstack_visual_indexes=[0]),
                   text_config=dict(text, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, head_dim=16,
                                    rope_parameters=dict(MROPE, mrope_interleaved=True)),
                   initializer_range=TEXT["initializer_range"], **tokens)
    config = transformers.Qwen3OmniMoeConfig(thinker_config=thinker, enable_audio_output=False)
    return transformers.Qwen3OmniMoeForConditionalGeneration(config)


def save_tiny_audio_lm(family: str, folder: Path, smollm2_tokenizer) -> Path:
    """Save a tiny random model of `family` with its processor into `folder`; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(smollm2_tokenizer, folder, family)
    _processor(family, tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    _model(family, tokenizer).save_pretrained(folder)
    if family == "qwen2.5-omni":  # the release's talker speakers, which its from_pretrained reads (none here)
        torch.save({}, folder / "spk_dict.pt")
    return folder
