"""The options of a build: which voice reads which records, checked and aligned how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from known_speech.settings import ALIGNERS, DEFAULT_ALIGNERS, DEFAULT_ASR_MODEL, DEFAULT_CTC_MODEL, DEFAULT_VOICE

__all__ = ["BuildOptions"]


@dataclass(frozen=True)
class BuildOptions:
    """One voice config's build. The CLI's defaults are these."""

    engine: str = "piper"
    voice: str = DEFAULT_VOICE
    asr_model: str = DEFAULT_ASR_MODEL
    source: str | None = None  # a Known-format JSON file; None: the bundled known_1000.json
    limit: int | None = None  # only the first N records
    workers: int = 2
    retry_failed: bool = False
    aligners: tuple[str, ...] = DEFAULT_ALIGNERS
    ctc_model: str = DEFAULT_CTC_MODEL
    unit_tokenizer: str | None = None  # Spirit LM's hubert_25hz folder, or a HubertModel folder with its quantizer
    max_words: int = 64  # an item with more spoken words fails before synthesis (Known prompts have at most 21)
    item_memory_gb: float | None = 4.0  # data memory a worker process may use; an item needing more fails
    prune: bool = False  # a smaller selection than the config holds drops the items it leaves out (else refused)

    def __post_init__(self) -> None:
        from .tts import ENGINES

        object.__setattr__(self, "aligners", tuple(self.aligners))
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r} is not known; choose one of {sorted(ENGINES)}")
        unknown = set(self.aligners) - set(ALIGNERS)
        if unknown:
            raise ValueError(f"aligners={self.aligners}: choose from {ALIGNERS}")
        if self.workers < 1:
            raise ValueError(f"workers={self.workers}: need at least 1")
        if self.max_words < 1:
            raise ValueError(f"max_words={self.max_words}: need at least 1")
        if self.item_memory_gb is not None and self.item_memory_gb <= 0:
            raise ValueError(f"item_memory_gb={self.item_memory_gb}: must be positive (or None for no limit)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit={self.limit}: need a positive number of items, or None for all")
        if self.source is not None and not Path(self.source).is_file():
            raise ValueError(f"source={self.source!r} is not a file")

    @property
    def voice_config(self) -> str:
        """The dataset config of this voice, e.g. `piper-en_US-joe-medium`."""
        voice = self.voice.rsplit("/", 1)[-1].removesuffix(".onnx")
        return f"{self.engine}-{voice}"
