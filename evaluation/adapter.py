"""The adapter API: how a model turns a Known record into tracer input for one modality.

An adapter owns the model's prompt format (markers, speech tokens or audio embeddings), tells the
tracer which input positions hold the subject, and maps every input position to the text token of
the prompt it stands for, so that speech positions can be aggregated through their text token as in
the paper. Adapters are listed by the `known_speech.adapters` entry-point group (the built-in ones too, in
pyproject.toml, so that this module imports none of the adapters that import it) or registered with
`register_adapter`, and say which model names they handle.
"""

from __future__ import annotations

import difflib
import logging
from abc import ABC, abstractmethod
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from known_speech.progress import follow_terminal

from .model_input import Modality, ModelInput

__all__ = [
    "Adapter",
    "ADAPTERS",
    "ENTRY_POINT_GROUP",
    "FALLBACK_ADAPTER",
    "register_adapter",
    "adapter_class",
    "adapter_for",
    "available_adapters",
    "bundled_models",
    "check_model_name",
    "resolve_dtype",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "known_speech.adapters"
FALLBACK_ADAPTER = "hf-text"  # any causal LM, text only


class Adapter(ABC):
    """One model family. Subclasses set `name` and `modalities`, load `model` (a `transformers` model
    with `generate`) and `tokenizer` in `__init__`, and implement `prepare`."""

    name: ClassVar[str]
    modalities: ClassVar[tuple[Modality, ...]]
    model: nn.Module
    tokenizer: object

    @classmethod
    def handles(cls, model: str) -> bool:
        """Whether this adapter is the default for a model name or folder."""
        return False

    def __init__(self, model_name: str, device: str = "cpu", dtype: str = "auto"):
        follow_terminal()  # subclasses load their model next: its bars only on a terminal
        self.model_name = model_name
        self.device = device
        self.dtype = resolve_dtype(dtype, device)
        self.options: dict = {}  # adapter-specific settings that change the input, recorded with results

    @property
    def decoder(self) -> nn.Module:
        """The causal LM the tracer runs: `model`, whose architecture spec says where its decoder layers are."""
        return self.model

    @abstractmethod
    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        """Model input for a record (a dataset row, or a Known record for text)."""

    def reference_input_ids(self, record: dict, modality: Modality) -> list[int] | None:
        """The ids the model's own code builds for an id input where they are not the tokenizer's default encoding
        of the prompt string (a chat encoding that takes a conversation, not a string), for check-model; else None."""
        return None

    def banned_token_ids(self, modality: Modality) -> list[int]:
        """Ids the model's own text generation forbids (Spirit LM: markers and speech tokens)."""
        return []

    def generation_settings(self) -> dict:
        """How the model generates beyond greedy decoding with the banned ids (which model's `generate`, what
        its generation config bans or requires), recorded in the filter settings; empty where nothing more."""
        return {}

    def generate(self, model_input: ModelInput, max_new_tokens: int) -> str:
        """Greedy continuation of the ids or input embeddings, decoded as text, with the banned ids banned."""
        return self.generate_batch([model_input], max_new_tokens)[0]

    def generate_batch(self, model_inputs: list[ModelInput], max_new_tokens: int) -> list[str]:
        """`generate` for many inputs of one modality in one left-padded batch (evaluation.generation)."""
        from .generation import generate_batch

        return generate_batch(self.model, self.tokenizer, model_inputs, max_new_tokens,
                              self.banned_token_ids(model_inputs[0].modality), self.device)

    def describe(self) -> dict:
        """What produced the results: the adapter, its options, the model's provenance, the toolkit."""
        from known_speech import __version__
        from known_speech.loading import model_provenance

        return {"adapter": self.name, "adapter_options": self.options, **model_provenance(self.model_name, self.decoder),
                "known_speech": __version__}

    @classmethod
    def check_modality(cls, modality: str) -> None:
        """On the class, so that a command refuses a modality before it loads the model."""
        if modality not in cls.modalities:
            raise ValueError(f"--modality {modality}: adapter {cls.name!r} supports {', '.join(cls.modalities)}")

    def input_embeddings(self, model_input: ModelInput) -> torch.Tensor:
        """(positions, hidden) embeddings entering the first layer (noise is calibrated on these)."""
        if model_input.inputs_embeds is not None:
            return model_input.inputs_embeds
        ids = torch.tensor(model_input.input_ids, device=self.device)
        return self.decoder.get_input_embeddings()(ids)


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """"auto": bfloat16 on CUDA (as Spirit LM's and most 7B models' own code loads them), float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype={dtype!r}: choose auto, float32, bfloat16 or float16")
    return getattr(torch, dtype)


ADAPTERS: dict[str, type[Adapter]] = {}


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: make an adapter available by its `name`."""
    ADAPTERS[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in ADAPTERS:
            continue
        try:
            ADAPTERS[entry_point.name] = entry_point.load()
        except Exception as err:  # a broken third-party plug-in must not hide ours
            logger.warning("adapter entry point %s (%s) failed to load: %s", entry_point.name, entry_point.value, err)


def available_adapters() -> list[str]:
    """The registered adapters and those of the entry points (the built-in ones are entry points of this package)."""
    _load_entry_points()
    return sorted(ADAPTERS)


def adapter_class(name: str) -> type[Adapter]:
    names = available_adapters()
    if name not in ADAPTERS:
        fix = (f"add one via the {ENTRY_POINT_GROUP!r} entry points" if names else
               "install known-speech (pip install -e .): its entry points list the built-in adapters")
        raise ValueError(f"unknown adapter {name!r}; available: {names} ({fix})")
    return ADAPTERS[name]


def bundled_models() -> tuple[str, ...]:
    """The model names that load offline from the package: the backbone and the organisms trained here."""
    from .organism.delta import ORGANISMS

    return ("smollm2", *ORGANISMS)


def check_model_name(model: str) -> None:
    """A bundled name mistyped is told so at once (before a Hub lookup or a load), with the name it is nearest."""
    bundled = bundled_models()
    if model in bundled or "/" in model or Path(model).exists():
        return
    near = difflib.get_close_matches(model, bundled, n=1, cutoff=0.7)
    if near:
        raise ValueError(f"--model {model!r}: no such model; did you mean {near[0]!r}? (bundled: {', '.join(bundled)}; "
                         "or a local folder, a .gguf file, a Hub name)")


def adapter_for(model: str) -> str:
    """The adapter whose `handles` accepts the model name or folder; hf-text for anything else."""
    check_model_name(model)
    for name in available_adapters():
        if name != FALLBACK_ADAPTER and ADAPTERS[name].handles(model):
            return name
    return FALLBACK_ADAPTER
