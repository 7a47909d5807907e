"""espeak-ng, the robotic baseline voice, through its C library (Debian's libespeak-ng, formant synthesis, no weights),
with word and phoneme times from its own synthesis events.

espeak-ng reports, as it synthesises, a phoneme event at the sample where each phoneme starts (speak_lib.h:
`espeak_EVENT`, `espeakINITIALIZE_PHONEME_EVENTS`), so its word times are exact as Piper's and Kokoro's are; the
command line cannot give them. It merges words into one word event ("in the"), so each spoken word is synthesised
alone once more, silently, for its phonemes, and `phoneme_times` matches them to the sentence's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np

from known_speech.spoken import SpokenForm

from .base import Synthesis, VoiceInfo
from .phoneme_times import voiced_phonemes, word_times

__all__ = ["EspeakEngine"]

# speak_lib.h
_SYNCHRONOUS, _PHONEME_EVENTS, _POS_CHARACTER, _CHARS_UTF8, _RATE = 2, 0x0001, 1, 1, 1
_EVENT_END_OF_LIST, _EVENT_PHONEME = 0, 7
_LOCK = threading.Lock()  # the library holds one synthesis state per process


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakEngine:
    """Any espeak-ng voice (`en-us`, `en-gb`, `en-us+f3`, ...); `speed` scales its 175 words per minute."""

    def __init__(self, voice: str = "en-us", speed: float = 1.0):
        name = ctypes.util.find_library("espeak-ng")
        if name is None:
            raise ImportError("espeak-ng is not installed: apt-get install espeak-ng (scripts/setup.sh does)")
        self._lib = ctypes.CDLL(name)
        self._lib.espeak_Info.restype = ctypes.c_char_p
        self.sample_rate = self._lib.espeak_Initialize(_SYNCHRONOUS, 0, None, _PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng could not be initialised ({name})")
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"voice={voice!r} is not an espeak-ng voice (see `espeak-ng --voices`)")
        self._lib.espeak_SetParameter(_RATE, round(175 * speed), 0)
        self._samples: list[np.ndarray] = []
        self._phonemes: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._collect)  # kept: the library calls it while synthesising
        self._lib.espeak_SetSynthCallback(self._callback)
        self.voice = voice
        self.info = VoiceInfo(engine="espeak-ng", voice=voice, speed=speed,
                              engine_version=self._lib.espeak_Info(None).decode().split()[0])

    def _collect(self, wav, count: int, events) -> int:
        if count > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        index = 0
        while events[index].type != _EVENT_END_OF_LIST:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                self._phonemes.append((bytes(event.id).split(b"\0")[0].decode("ascii", "replace"), event.sample))
            index += 1
        return 0

    def _speak(self, text: str) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """The samples (int16) and (phoneme, start sample, end sample) of every phoneme, pauses as "_"."""
        with _LOCK:
            self._samples, self._phonemes = [], []
            data = text.encode("utf-8")
            self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            samples = np.concatenate(self._samples) if self._samples else np.zeros(0, np.int16)
            starts = self._phonemes
        ends = [start for _, start in starts[1:]] + [len(samples)]
        return samples, [("_" if name.startswith("_") else name, start, min(end, len(samples)))
                         for (name, start), end in zip(starts, ends)]

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis:
        samples, alignments = self._speak(spoken.reading)
        words = [[p for p, _, _ in self._speak(word.text)[1] if p != "_"] for word in spoken.words]
        times, scores = word_times(words, alignments, self.sample_rate)
        return Synthesis(samples.astype(np.float32) / 32768.0, self.sample_rate, times, scores,
                         phonemes=voiced_phonemes(alignments, self.sample_rate))
