"""Piper TTS (GPL-3.0, an optional extra) with exact word times from its per-phoneme sample counts.

Piper reports how many samples each phoneme took (`include_alignments`, which needs `onnx`); `phoneme_times`
turns them into word and phoneme times.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

import numpy as np

from known_speech.settings import DEFAULT_VOICE, bundled_piper_voice
from known_speech.spoken import SpokenForm

from .base import Synthesis, VoiceInfo
from .phoneme_times import SKIPPED_PHONEMES, voiced_phonemes, word_times

__all__ = ["PiperEngine"]

logger = logging.getLogger(__name__)

PIPER_VOICE_CACHE = Path.home() / ".cache" / "known-speech" / "piper-voices"

class PiperEngine:
    """A Piper voice: the bundled en_US-joe-medium by name, or any voice by local .onnx path."""

    def __init__(self, voice: str = DEFAULT_VOICE, speaker_id: int | None = None, length_scale: float | None = None):
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as err:
            raise ImportError("Piper is an optional extra (GPL-3.0): pip install 'known-speech[piper]'") from err
        model_path = self._resolve(voice)
        self._voice = PiperVoice.load(model_path, include_alignments=True)
        self._config = SynthesisConfig(speaker_id=speaker_id, length_scale=length_scale)
        scale = length_scale or self._voice.config.length_scale
        self.info = VoiceInfo(
            engine="piper",
            voice=model_path.name.removesuffix(".onnx"),
            speaker=str(speaker_id) if speaker_id is not None else None,
            speed=round(1.0 / scale, 4) if scale else 1.0,
            engine_version=metadata.version("piper-tts"),
        )

    @staticmethod
    def _resolve(voice: str) -> Path:
        """The bundled joe voice, a local .onnx, or any voice of the Piper list by name (downloaded once with
        piper's own downloader into ~/.cache/known-speech/piper-voices; needs the Hub)."""
        if voice == DEFAULT_VOICE:
            return bundled_piper_voice()
        path = Path(voice)
        if path.suffix == ".onnx" and path.is_file():
            return path
        from piper.download_voices import VOICE_PATTERN, download_voice

        if not VOICE_PATTERN.match(voice):
            raise ValueError(f"voice={voice!r}: give a Piper voice name such as en_US-lessac-medium, or a path to a "
                             f"voice .onnx with its .onnx.json beside it")
        cached = PIPER_VOICE_CACHE / f"{voice}.onnx"
        if not cached.is_file():
            PIPER_VOICE_CACHE.mkdir(parents=True, exist_ok=True)
            try:
                download_voice(voice, PIPER_VOICE_CACHE)
            except OSError as err:
                raise ValueError(f"voice={voice!r} is not cached in {PIPER_VOICE_CACHE} and could not be downloaded "
                                 f"from the Hub ({err}); offline, pass a local .onnx path") from err
        return cached

    def _phonemes_of(self, text: str) -> list[str]:
        return [p for sentence in self._voice.phonemize(text) for p in sentence if p not in SKIPPED_PHONEMES]

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis:
        chunks = list(self._voice.synthesize(spoken.reading, syn_config=self._config, include_alignments=True))
        if not chunks:
            raise RuntimeError(f"Piper produced no audio for {spoken.reading!r}")
        sample_rate = chunks[0].sample_rate
        samples = np.concatenate([chunk.audio_float_array for chunk in chunks])
        alignments: list[tuple[str, int, int]] = []  # (phoneme, start sample, end sample) over the whole utterance
        cursor = 0
        for chunk in chunks:
            if chunk.phoneme_alignments is None:
                logger.warning("Piper gave no phoneme alignment for %r", spoken.reading)
                return Synthesis(samples, sample_rate)
            for alignment in chunk.phoneme_alignments:
                alignments.append((alignment.phoneme, cursor, cursor + int(alignment.num_samples)))
                cursor += int(alignment.num_samples)
        times, scores = word_times([self._phonemes_of(word.text) for word in spoken.words], alignments, sample_rate)
        return Synthesis(samples, sample_rate, times, scores, phonemes=voiced_phonemes(alignments, sample_rate))
