"""Word alignments of the audio against the written prompt."""

from .tts import words_from_synthesis

__all__ = ["words_from_synthesis"]
