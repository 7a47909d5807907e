"""fairseq-layout HuBERT checkpoints as `transformers` HubertModels, without fairseq.

Spirit LM's release keeps `mhubert_base_25hz.pt` as {model_cfg, task_cfg, model_weight} with fairseq's
parameter names (facebookresearch/spiritlm, spiritlm/speech_tokenizer/hubert/hubert_model/hubert_model.py:
648-685); fairseq's own checkpoints keep {cfg: {model, task}, model}. The names map onto transformers'
HubertModel as transformers' own conversion script maps them (models/hubert/
convert_hubert_original_pytorch_checkpoint_to_pytorch.py), and fairseq's `extract_features(output_layer=l)`
is `hidden_states[l]`.
"""

from __future__ import annotations

import ast

import torch

__all__ = ["hubert_from_fairseq", "conv_layers"]


def conv_layers(description: str) -> list[tuple[int, int, int]]:
    """fairseq's conv_feature_layers, e.g. "[(512,10,5)] + [(512,3,2)] * 4", without eval()."""

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(item) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"conv_feature_layers={description!r}: unsupported expression")

    return [tuple(layer) for layer in value(ast.parse(description, mode="eval").body)]


def hubert_from_fairseq(checkpoint: dict):
    """A `transformers` HubertModel from a fairseq-layout HuBERT checkpoint (Spirit LM's release keeps
    model_cfg / task_cfg / model_weight; fairseq's own keeps cfg.model / model): (model, normalize)."""
    from transformers import HubertConfig, HubertModel

    if "model_weight" in checkpoint:
        model_cfg, task_cfg, weights = checkpoint["model_cfg"], checkpoint.get("task_cfg", {}), checkpoint["model_weight"]
    elif "cfg" in checkpoint and "model" in checkpoint:
        model_cfg, task_cfg, weights = dict(checkpoint["cfg"]["model"]), dict(checkpoint["cfg"]["task"]), checkpoint["model"]
    else:
        raise ValueError("not a fairseq HuBERT checkpoint: expected model_cfg/model_weight or cfg/model")
    if model_cfg.get("layer_type", "transformer") != "transformer" or int(model_cfg.get("pos_conv_depth", 1)) != 1:
        raise ValueError(f"HuBERT layer_type={model_cfg.get('layer_type')!r}, pos_conv_depth="
                         f"{model_cfg.get('pos_conv_depth')}: only the transformer encoder converts")
    conv = conv_layers(model_cfg.get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"))
    hidden = int(model_cfg.get("encoder_embed_dim", 768))
    batch_norm = bool(model_cfg.get("conv_pos_batch_norm", False))
    config = HubertConfig(
        hidden_size=hidden, num_hidden_layers=int(model_cfg.get("encoder_layers", 12)),
        num_attention_heads=int(model_cfg.get("encoder_attention_heads", 12)),
        intermediate_size=int(model_cfg.get("encoder_ffn_embed_dim", 3072)),
        hidden_act=model_cfg.get("activation_fn", "gelu"),
        conv_dim=[c[0] for c in conv], conv_kernel=[c[1] for c in conv], conv_stride=[c[2] for c in conv],
        conv_bias=bool(model_cfg.get("conv_bias", False)),
        feat_extract_norm="layer" if model_cfg.get("extractor_mode", "default") == "layer_norm" else "group",
        do_stable_layer_norm=bool(model_cfg.get("layer_norm_first", False)),
        num_conv_pos_embeddings=int(model_cfg.get("conv_pos", 128)),
        num_conv_pos_embedding_groups=int(model_cfg.get("conv_pos_groups", 16)),
        conv_pos_batch_norm=batch_norm, layer_norm_eps=1e-5, feat_proj_layer_norm=True,
    )
    model = HubertModel(config).eval()
    state = {}
    for name, tensor in weights.items():
        target = _hf_name(name, config, batch_norm)
        if target is not None:
            state[target] = tensor
    if "post_extract_proj.weight" not in weights:  # fairseq has no projection when the dims agree
        state["feature_projection.projection.weight"] = torch.eye(hidden)
        state["feature_projection.projection.bias"] = torch.zeros(hidden)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if name != "masked_spec_embed"]
    if missing or unexpected:
        raise ValueError(f"fairseq HuBERT conversion: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model, bool(task_cfg.get("normalize", False))


def _hf_name(name: str, config, batch_norm: bool) -> str | None:
    """fairseq parameter name -> transformers HubertModel name (None: not used for features)."""
    parts = name.split(".")
    if parts[0] == "feature_extractor":  # conv_layers.<i>.<0: conv | 2: norm>.<param>
        layer, module, param = int(parts[2]), int(parts[3]), parts[-1]
        if module == 0:
            return f"feature_extractor.conv_layers.{layer}.conv.{param}"
        if config.feat_extract_norm == "layer":  # 2.1 is the LayerNorm inside TransposeLast
            return f"feature_extractor.conv_layers.{layer}.layer_norm.{param}"
        return f"feature_extractor.conv_layers.{layer}.layer_norm.{param}" if layer == 0 else None
    if parts[0] == "layer_norm":
        return f"feature_projection.layer_norm.{parts[1]}"
    if parts[0] == "post_extract_proj":
        return f"feature_projection.projection.{parts[1]}"
    if parts[0] == "mask_emb":
        return "masked_spec_embed"
    if parts[:2] == ["encoder", "pos_conv"]:
        conv_index = "1" if batch_norm else "0"
        if parts[2] != conv_index:
            return f"encoder.pos_conv_embed.batch_norm.{parts[-1]}"
        param = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
        return f"encoder.pos_conv_embed.conv.{param.get(parts[-1], parts[-1])}"
    if parts[:2] == ["encoder", "layer_norm"]:
        return f"encoder.layer_norm.{parts[2]}"
    if parts[:2] == ["encoder", "layers"]:
        index, rest = parts[2], ".".join(parts[3:])
        for source, target in (("self_attn_layer_norm", "layer_norm"), ("self_attn.", "attention."),
                               ("fc1", "feed_forward.intermediate_dense"), ("fc2", "feed_forward.output_dense"),
                               ("final_layer_norm", "final_layer_norm")):
            if rest.startswith(source):
                return f"encoder.layers.{index}.{target}{rest[len(source):]}"
    if parts[0] in ("label_embs_concat", "final_proj"):
        return None
    raise ValueError(f"fairseq HuBERT parameter {name!r} has no transformers counterpart")
