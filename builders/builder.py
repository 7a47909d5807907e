"""The `datasets` builder of known-speech: it reads a voice config's committed item cache, one train
split of Known facts, as `datasets`' packaged builders read files; the items are built before (build.py)."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from known_speech.schema import record_features

from .cache import ItemCache

__all__ = ["KnownSpeechConfig", "KnownSpeech"]

_DESCRIPTION = (
    "The Known factual-recall prompts (Meng et al., 2022) as synthetic speech, with word alignments, "
    "subject time spans, speech-token spans and ASR checks."
)


@dataclass
class KnownSpeechConfig(datasets.BuilderConfig):
    """A voice config: where its committed items are, and which records (in order) the split holds."""

    item_cache: str = ""
    known_ids: tuple[int, ...] = ()


class KnownSpeech(datasets.GeneratorBasedBuilder):
    """Configs are voices and voices are open-ended (any Piper .onnx, any engine), so none is
    predeclared: `datasets` builds the config from the keyword arguments (name=<voice config>)."""

    BUILDER_CONFIG_CLASS = KnownSpeechConfig
    BUILDER_CONFIGS: list[KnownSpeechConfig] = []

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=record_features(),
            homepage="https://rome.baulab.info/",
            license="MIT (Known prompts); audio licence follows the TTS voice",
        )

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"known_ids": self.config.known_ids})]

    def _generate_examples(self, known_ids):
        cache = ItemCache(self.config.item_cache)
        for known_id in known_ids:
            outcome = cache.get(known_id)
            if outcome is None or outcome.status != "ok":
                continue  # counted and listed with its reason in the build summary
            audio = {"bytes": cache.audio(known_id), "path": f"{known_id}.flac"}
            yield known_id, {**outcome.row, "audio": audio}
