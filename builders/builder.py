"""The `datasets` builder of known-speech: one config per voice, one train split of Known facts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets

from known_speech.schema import record_features
from known_speech.settings import DEFAULT_ALIGNERS, DEFAULT_ASR_MODEL, DEFAULT_CTC_MODEL, DEFAULT_VOICE
from known_speech.source import file_sha256, load_known, bundled_source_path

from .cache import ItemCache
from .pipeline import BuildOptions, BuildSummary, build_items
from .tts import ENGINES

__all__ = ["KnownSpeechConfig", "KnownSpeech"]

logger = logging.getLogger(__name__)

_DESCRIPTION = (
    "The Known factual-recall prompts (Meng et al., 2022) as synthetic speech, with word alignments, "
    "subject time spans, speech-token spans and ASR checks."
)


@dataclass
class KnownSpeechConfig(datasets.BuilderConfig):
    """A voice: the TTS engine and voice, the ASR model checking it, and the Known source."""

    engine: str = "piper"
    voice: str = DEFAULT_VOICE
    asr_model: str = DEFAULT_ASR_MODEL
    source: str | None = None
    limit: int | None = None
    workers: int = 1
    retry_failed: bool = False
    aligners: tuple[str, ...] = DEFAULT_ALIGNERS
    ctc_model: str = DEFAULT_CTC_MODEL
    unit_tokenizer: str | None = None
    work_dir: str = "known-speech/.build"

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r} is not known; choose one of {sorted(ENGINES)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit={self.limit}: need a positive number of items, or None for all")
        if self.source is not None and not Path(self.source).is_file():
            raise ValueError(f"source={self.source!r} is not a file")
        if not self.name or self.name == "default":
            self.name = self.options.config_name
        super().__post_init__()

    @property
    def options(self) -> BuildOptions:
        return BuildOptions(self.engine, self.voice, self.asr_model, self.workers, self.retry_failed,
                            tuple(self.aligners), self.ctc_model, self.unit_tokenizer)


class KnownSpeech(datasets.GeneratorBasedBuilder):
    """Configs are voices and voices are open-ended (any Piper .onnx, any engine), so none is
    predeclared: `datasets` then builds the config from the keyword arguments through
    `KnownSpeechConfig(**kwargs)`, which validates them and names the config after the voice.
    (With a predeclared default, `datasets` would copy it and setattr the arguments, skipping both.)"""

    BUILDER_CONFIG_CLASS = KnownSpeechConfig
    BUILDER_CONFIGS: list[KnownSpeechConfig] = []

    summary: BuildSummary | None = None

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=record_features(),
            homepage="https://rome.baulab.info/",
            license="MIT (Known prompts); audio licence follows the TTS voice",
        )

    @property
    def source_path(self) -> Path:
        return Path(self.config.source) if self.config.source else bundled_source_path()

    def _split_generators(self, dl_manager):
        records = load_known(self.source_path)
        if self.config.limit is not None:
            records = records[: self.config.limit]
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"records": records})]

    def _generate_examples(self, records):
        cache = ItemCache(Path(self.config.work_dir) / self.config.name / "items")
        self.summary = build_items(records, self.config.options, cache)
        for record in records:
            outcome = cache.get(record.known_id)
            if outcome is None or outcome.status != "ok":
                continue  # counted and listed with its reason in the summary
            audio = {"bytes": cache.audio(record.known_id), "path": f"{record.known_id}.flac"}
            yield record.known_id, {**outcome.row, "audio": audio}

    def source_sha256(self) -> str:
        return file_sha256(self.source_path)
