"""Artifacts in the formats real releases ship, built by the tests: SentencePiece and byte-level BPE
tokenizers trained on the Known prompts, Spirit LM's fairseq-layout mHuBERT checkpoint and linear
quantizer, and a Spirit LM checkpoints folder. Random weights: for plumbing and formats, not for recall."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPIRITLM_MARKERS = ["[Text]", "[Speech]"] + [f"[Hu{u}]" for u in range(501)]
EXPRESSIVE_MARKERS = [f"[Pi{u}]" for u in range(64)] + [f"[St{u}]" for u in range(100)]
SPECIALS = {"0": "<unk>", "1": "<s>", "2": "</s>"}


def known_texts() -> list[str]:
    from known_speech.source import load_known

    return [f"{record.prompt} {record.attribute}" for record in load_known()]


def train_sentencepiece(prefix: Path, user_defined_symbols: list[str] = (), vocab_size: int = 900) -> Path:
    """A BPE SentencePiece model with Llama-2's settings: byte fallback, dummy prefix, identity
    normalisation, split digits, <unk> <s> </s> at 0, 1, 2."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(known_texts()), model_prefix=str(prefix), vocab_size=vocab_size + len(user_defined_symbols),
        model_type="bpe", byte_fallback=True, add_dummy_prefix=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        allow_whitespace_only_pieces=True, user_defined_symbols=list(user_defined_symbols), minloglevel=2,
        hard_vocab_limit=False)
    return Path(f"{prefix}.model")


def _added(content: str, special: bool) -> dict:
    return {"content": content, "lstrip": False, "rstrip": False, "single_word": False,
            "normalized": not special, "special": special}


def write_llama_tokenizer(folder: Path, model_file: Path, markers: list[str], markers_as: str, special: bool = True,
                          legacy: bool | None = None, additional_special: bool = False, bos: bool = True) -> Path:
    """A Llama-2 release tokenizer folder: tokenizer.model, tokenizer_config.json, special_tokens_map.json.
    markers_as "pieces": the markers are user-defined pieces of the SentencePiece model; "added": added
    tokens of tokenizer_config.json after the model's vocabulary."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(model_file.read_bytes())
    size = spm.SentencePieceProcessor(model_file=str(model_file)).get_piece_size()
    decoder = {index: _added(content, True) for index, content in SPECIALS.items()}
    if markers_as == "added":
        decoder.update({str(size + i): _added(marker, special) for i, marker in enumerate(markers)})
    config = {"tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "eos_token": "</s>",
              "bos_token": "<s>" if bos else None, "add_bos_token": True, "add_eos_token": False,
              "clean_up_tokenization_spaces": False, "added_tokens_decoder": decoder, "model_max_length": 4096}
    if legacy is not None:
        config["legacy"] = legacy
    special_map = {"unk_token": "<unk>", "eos_token": "</s>", **({"bos_token": "<s>"} if bos else {})}
    if additional_special:
        config["additional_special_tokens"] = special_map["additional_special_tokens"] = markers[:2]
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map, indent=1))
    return folder


def _byte_level_bpe(llama3: bool, vocab_size: int = 900):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    if llama3:  # Llama-3's pre-tokenizer: its split pattern, then bytes
        pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+")
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ["<|endoftext|>"]
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(known_texts(), trainer)
    return tokenizer, specials


def write_gpt2_tokenizer(folder: Path, markers: list[str]) -> Path:
    """GPT-2-style byte-level BPE (no BOS), with vocab.json + merges.txt for the slow class too."""
    from transformers import PreTrainedTokenizerFast

    tokenizer, (endoftext,) = _byte_level_bpe(llama3=False)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.model.save(str(folder))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=endoftext, eos_token=endoftext,
                                   unk_token=endoftext)
    fast.add_tokens(markers, special_tokens=True)
    fast.save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "GPT2Tokenizer"
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return folder


def write_llama3_tokenizer(folder: Path, markers: list[str]) -> Path:
    """Llama-3-style byte-level BPE whose post-processor puts <|begin_of_text|> first."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tokenizer, (begin, end) = _byte_level_bpe(llama3=True)
    begin_id = tokenizer.token_to_id(begin)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{begin} $A", pair=f"{begin} $A {begin} $B",
                                                            special_tokens=[(begin, begin_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=begin, eos_token=end)
    fast.add_tokens(markers, special_tokens=True)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return folder


TINY_MHUBERT = {  # fairseq model_cfg of a tiny mHuBERT-base-25Hz: the real conv strides (640 samples per frame)
    "conv_feature_layers": "[(16,10,5)] + [(16,4,4)] * 2 + [(16,2,2)] * 3",
    "encoder_layers": 12, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 2,
    "activation_fn": "gelu", "layer_type": "transformer", "extractor_mode": "default", "conv_bias": False,
    "layer_norm_first": False, "conv_pos": 16, "conv_pos_groups": 4, "label_rate": 25.0,
}


def fairseq_hubert_weights(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under fairseq's HuBERT parameter names (feature_extractor.conv_layers.*, layer_norm,
    post_extract_proj, encoder.pos_conv.0 with weight norm, encoder.layers.*)."""
    from known_speech.hubert_conversion import conv_layers

    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=generator) * scale

    weights, channels = {}, 1
    for index, (dim, kernel, _) in enumerate(conv_layers(config["conv_feature_layers"])):
        weights[f"feature_extractor.conv_layers.{index}.0.weight"] = rand(dim, channels, kernel, scale=1 / kernel ** 0.5)
        if index == 0:
            weights["feature_extractor.conv_layers.0.2.weight"] = 1 + rand(dim)
            weights["feature_extractor.conv_layers.0.2.bias"] = rand(dim)
        channels = dim
    hidden, ffn, k, groups = (config[key] for key in ("encoder_embed_dim", "encoder_ffn_embed_dim", "conv_pos",
                                                       "conv_pos_groups"))
    weights.update({"layer_norm.weight": 1 + rand(channels), "layer_norm.bias": rand(channels),
                    "post_extract_proj.weight": rand(hidden, channels), "post_extract_proj.bias": rand(hidden),
                    "mask_emb": rand(hidden),
                    "encoder.pos_conv.0.weight_g": 1 + rand(1, 1, k).abs(),
                    "encoder.pos_conv.0.weight_v": rand(hidden, hidden // groups, k),
                    "encoder.pos_conv.0.bias": rand(hidden),
                    "encoder.layer_norm.weight": 1 + rand(hidden), "encoder.layer_norm.bias": rand(hidden)})
    # small layer weights: a deep random post-LN encoder otherwise maps every frame to nearly one vector,
    # and every frame would get the same unit
    for layer in range(config["encoder_layers"]):
        prefix = f"encoder.layers.{layer}."
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            weights[prefix + f"self_attn.{projection}.weight"] = rand(hidden, hidden, scale=0.05)
            weights[prefix + f"self_attn.{projection}.bias"] = rand(hidden)
        weights.update({prefix + "self_attn_layer_norm.weight": 1 + rand(hidden),
                        prefix + "self_attn_layer_norm.bias": rand(hidden),
                        prefix + "fc1.weight": rand(ffn, hidden, scale=0.05), prefix + "fc1.bias": rand(ffn),
                        prefix + "fc2.weight": rand(hidden, ffn, scale=0.05), prefix + "fc2.bias": rand(hidden),
                        prefix + "final_layer_norm.weight": 1 + rand(hidden),
                        prefix + "final_layer_norm.bias": rand(hidden)})
    return weights


def write_fairseq_hubert(path: Path, config: dict = TINY_MHUBERT, seed: int = 0) -> dict[str, torch.Tensor]:
    """Spirit LM's `mhubert_base_25hz.pt` layout: {model_cfg, task_cfg, model_weight, dictionaries_symbols}."""
    weights = fairseq_hubert_weights(config, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_cfg": dict(config), "task_cfg": {"sample_rate": 16_000, "normalize": False, "label_rate": 25.0},
                "model_weight": weights, "dictionaries_symbols": []}, path)
    return weights


def write_linear_quantizer(path: Path, dim: int = 32, vocab_size: int = 500, upstream_dim: int = 533,
                           seed: int = 0, blank_bias: float = 0.0) -> dict:
    """Spirit LM's `L11_quantizer_500.pt` layout: {model_cfg: {vocab_size, dim, upstream_dim}, model_weight:
    the state dict of Sequential(Linear, LeakyReLU, Linear, LeakyReLU, Linear)} (indices 0, 2, 4)."""
    generator = torch.Generator().manual_seed(seed)
    mid = upstream_dim - (vocab_size + 1)
    sizes = [dim, dim - mid // 4, dim - mid // 2, vocab_size + 1]
    weights = {}
    for index, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        weights[f"{2 * index}.weight"] = torch.randn(n_out, n_in, generator=generator) * (3 / n_in ** 0.5)
        weights[f"{2 * index}.bias"] = torch.randn(n_out, generator=generator) * 0.1
    weights["4.bias"][vocab_size] += blank_bias
    state = {"model_cfg": {"vocab_size": vocab_size, "dim": dim, "upstream_dim": upstream_dim}, "model_weight": weights}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def write_spiritlm_release(root: Path, sentencepiece_model: Path, expressive: bool = False, bos: bool = True,
                           seed: int = 0) -> Path:
    """checkpoints/spiritlm_model/spirit-lm-<base|expressive>-7b (tiny Llama, the release tokenizer files with
    the markers as user-defined pieces) and checkpoints/speech_tokenizer/hubert_25hz (fairseq mHuBERT and
    the linear quantizer)."""
    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM

    name = "spirit-lm-expressive-7b" if expressive else "spirit-lm-base-7b"
    lm_dir = root / "spiritlm_model" / name
    write_llama_tokenizer(lm_dir, sentencepiece_model, SPIRITLM_MARKERS, "pieces", bos=bos)
    vocab = spm.SentencePieceProcessor(model_file=str(sentencepiece_model)).get_piece_size()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(lm_dir)
    hubert_dir = root / "speech_tokenizer" / "hubert_25hz"
    write_fairseq_hubert(hubert_dir / "mhubert_base_25hz.pt", seed=seed)
    write_linear_quantizer(hubert_dir / "L11_quantizer_500.pt", seed=seed)
    return lm_dir
