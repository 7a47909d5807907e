"""Piper TTS (GPL-3.0, an optional extra) with exact word times from its per-phoneme sample counts.

Piper reports how many samples each phoneme took (`include_alignments`, which needs `onnx`), but
espeak-ng merges words when it phonemises a sentence ("in the" -> "ɪnðə"). Each spoken word is
therefore phonemised on its own and matched against the sentence's phonemes (difflib), which
assigns every sentence phoneme, and so its samples, to one spoken word.
"""

from __future__ import annotations

import difflib
import logging
from importlib import metadata
from pathlib import Path

import numpy as np

from known_speech.settings import DEFAULT_VOICE, bundled_piper_voice
from known_speech.spoken import SpokenForm

from .base import Synthesis, VoiceInfo

__all__ = ["PiperEngine", "assign_phonemes_to_words"]

logger = logging.getLogger(__name__)

PIPER_VOICE_CACHE = Path.home() / ".cache" / "known-speech" / "piper-voices"

_STRESS, _LENGTH, _PAUSE = ("ˈ", "ˌ"), "ː", "_"
_SKIPPED_PHONEMES = {" ", "^", "$", "_", ".", ",", "!", "?", ";", ":", "—", "…"}


def assign_phonemes_to_words(
    word_phonemes: list[list[str]], sentence_phonemes: list[str]
) -> tuple[list[int | None], list[float]]:
    """Owner word index (or None) of each sentence phoneme, and the fraction of each word's phonemes found."""
    flat = [p for phonemes in word_phonemes for p in phonemes]
    owner_of_flat = [index for index, phonemes in enumerate(word_phonemes) for _ in phonemes]
    owners: list[int | None] = [None] * len(sentence_phonemes)
    matched = [0] * len(word_phonemes)
    matcher = difflib.SequenceMatcher(None, flat, sentence_phonemes, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            for offset in range(a1 - a0):
                owners[b0 + offset] = owner_of_flat[a0 + offset]
                matched[owner_of_flat[a0 + offset]] += 1
        elif tag == "replace":
            # spread the sentence phonemes proportionally over the word phonemes they replace
            for offset in range(b1 - b0):
                owners[b0 + offset] = owner_of_flat[a0 + (offset * (a1 - a0)) // (b1 - b0)]
    scores = [matched[i] / max(1, len(p)) for i, p in enumerate(word_phonemes)]
    return owners, scores


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
        return [p for sentence in self._voice.phonemize(text) for p in sentence if p not in _SKIPPED_PHONEMES]

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis:
        chunks = list(self._voice.synthesize(spoken.reading, syn_config=self._config, include_alignments=True))
        if not chunks:
            raise RuntimeError(f"Piper produced no audio for {spoken.reading!r}")
        sample_rate = chunks[0].sample_rate
        samples = np.concatenate([chunk.audio_float_array for chunk in chunks])
        # (phoneme, start sample, end sample) over the whole utterance
        timeline: list[tuple[str, int, int]] = []
        voiced: list[tuple[str, float, float]] = []  # every phoneme with samples, stress marks folded forward
        cursor = 0
        stressed_from: int | None = None
        for chunk in chunks:
            if chunk.phoneme_alignments is None:
                logger.warning("Piper gave no phoneme alignment for %r", spoken.reading)
                return Synthesis(samples, sample_rate)
            for alignment in chunk.phoneme_alignments:
                end = cursor + int(alignment.num_samples)
                if alignment.phoneme not in _SKIPPED_PHONEMES:
                    timeline.append((alignment.phoneme, cursor, end))
                if alignment.phoneme in _STRESS:  # its samples belong to the phoneme it marks
                    stressed_from = cursor if stressed_from is None else stressed_from
                elif alignment.phoneme == _LENGTH and voiced:  # "ː" lengthens the phoneme before it
                    voiced[-1] = (voiced[-1][0], voiced[-1][1], end / sample_rate)
                elif end > (cursor if stressed_from is None else stressed_from):
                    label = _PAUSE if alignment.phoneme in _SKIPPED_PHONEMES else alignment.phoneme
                    start = cursor if stressed_from is None else stressed_from
                    voiced.append((label, start / sample_rate, end / sample_rate))
                    stressed_from = None
                cursor = end
        word_phonemes = [self._phonemes_of(word.text) for word in spoken.words]
        owners, scores = assign_phonemes_to_words(word_phonemes, [p for p, _, _ in timeline])
        word_times: list[tuple[float, float]] = []
        previous_end = 0
        for index in range(len(spoken.words)):
            owned = [(start, end) for (_, start, end), owner in zip(timeline, owners) if owner == index]
            if owned:
                start, end = owned[0][0], owned[-1][1]
            else:  # nothing of this word was found: a zero-length word where it should be
                start = end = previous_end
            word_times.append((start / sample_rate, end / sample_rate))
            previous_end = end
        return Synthesis(samples, sample_rate, word_times, scores, phonemes=voiced)
