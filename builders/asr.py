"""ASR check: does a Whisper model hear the spoken prompt, and the subject in it?

WER as known_speech.wer measures it (Whisper's English normaliser, then jiwer).
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from known_speech.settings import DEFAULT_ASR_MODEL, bundled_whisper_dir
from known_speech.wer import normalise_text, word_error_rate

__all__ = ["AsrCheck", "TimedWord", "WhisperChecker", "normalise_text", "word_error_rate", "contains_phrase",
           "shared_words", "heard_other_speech", "voiced_seconds"]

logger = logging.getLogger(__name__)


def shared_words(reference: str, hypothesis: str) -> set[str]:
    """Normalised words the two texts have in common."""
    return set(normalise_text(reference).split()) & set(normalise_text(hypothesis).split())


# below this character similarity a transcript with no word of the prompt is other speech or none
# (misheard names still sound alike: "Drake Britton plays as the" / "Great for it in places that": 0.57)
FOREIGN_BELOW = 0.45


def heard_other_speech(reference: str, hypothesis: str) -> bool:
    """The transcript shares no word with the reference and does not sound like it either."""
    if shared_words(reference, hypothesis):
        return False
    return difflib.SequenceMatcher(None, normalise_text(reference), normalise_text(hypothesis)).ratio() < FOREIGN_BELOW


def voiced_seconds(samples_16k: np.ndarray) -> float:
    """Seconds of voice activity in 16 kHz audio, by the Silero VAD that faster-whisper ships (its default options):
    what tells speech that Whisper mishears from audio that holds none."""
    from faster_whisper.vad import get_speech_timestamps

    return sum(span["end"] - span["start"] for span in get_speech_timestamps(np.asarray(samples_16k, np.float32))) / 16_000


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether the normalised phrase occurs in the normalised text as whole words."""
    text, phrase = normalise_text(text), normalise_text(phrase)
    return bool(phrase) and re.search(rf"(?:^|\s){re.escape(phrase)}(?:\s|$)", text) is not None


@dataclass(frozen=True)
class TimedWord:
    """A word as faster-whisper reports it with `word_timestamps=True`."""

    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class AsrCheck:
    model: str
    transcript: str
    wer: float
    subject_recognised: bool
    words: tuple = ()  # TimedWord per heard word (not stored in the row's `asr` field)

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "words"}


class WhisperChecker:
    """faster-whisper; `tiny.en` is the bundled offline model, any other name or CTranslate2 dir works."""

    def __init__(self, model: str = DEFAULT_ASR_MODEL, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 1, beam_size: int = 5):
        try:
            from faster_whisper import WhisperModel
        except ImportError as err:
            raise ImportError("pip install 'known-speech[asr]'") from err
        self.model_name = model
        path = str(bundled_whisper_dir()) if model == DEFAULT_ASR_MODEL and not Path(model).exists() else model
        self._model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        self.beam_size = beam_size

    def transcribe(self, samples_16k: np.ndarray) -> tuple[str, list]:
        """Transcript and its words with times (faster-whisper's cross-attention word timestamps)."""
        segments, _ = self._model.transcribe(
            samples_16k, language="en", beam_size=self.beam_size, condition_on_previous_text=False,
            word_timestamps=True,
        )
        segments = list(segments)
        words = [TimedWord(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                 for segment in segments for w in (segment.words or [])]
        return " ".join(segment.text.strip() for segment in segments).strip(), words

    def check(self, samples_16k: np.ndarray, reference: str, subject: str) -> AsrCheck:
        transcript, words = self.transcribe(samples_16k)
        return AsrCheck(
            model=self.model_name,
            transcript=transcript,
            wer=word_error_rate(reference, transcript),
            subject_recognised=contains_phrase(transcript, subject),
            words=tuple(words),
        )
