"""Oracle phone units: at each frame, the phoneme the synthesiser voiced there, read from Piper's own phoneme
durations rather than heard from the audio.

No speech encoder can give better units of this voice than its own phone labels: a model trained on them is
the upper bound of issue #26 ("the same recipe on oracle phone units from Piper's alignment, named as such"),
the measure of how much of the gap between recall from text and from speech a better tokenizer could close.
The units exist only where the phoneme times do (the corpus's rows and the dataset's `phonemes` field of a
Piper build); a waveform alone is refused.

A tokenizer is a folder: `unit_tokenizer.json` holds its kind, rate and phoneme inventory (unit i is the i-th
phoneme; the pause first, a catch-all for phonemes the fitting corpus never voiced last), and its sha256
covers both, so a model trained on these units refuses any other inventory or rate.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .unit_quality import frame_labels
from .units import UnitProvenance

__all__ = ["PhoneUnitTokenizer", "fit_phone_tokenizer", "PHONE_UNITS_KIND", "PAUSE", "OTHER"]

PHONE_UNITS_KIND = "piper-phones"
TOKENIZER_FILE = "unit_tokenizer.json"  # the name every unit tokenizer folder uses (whisper_units.TOKENIZER_FILE)
PAUSE = "_"  # Piper's pause, and a frame past the last phoneme
OTHER = "<other>"  # a phoneme the fitting corpus never voiced


@dataclass
class PhoneUnitTokenizer:
    """Units of phoneme timelines: one per frame at `rate_hz`, the phoneme at the frame's centre."""

    inventory: tuple[str, ...]  # unit i is inventory[i]: PAUSE first, OTHER last
    rate_hz: float = 25.0
    fitted_on: dict = field(default_factory=dict)  # what the inventory was read from (corpus, utterances, voice)

    def __post_init__(self) -> None:
        self.inventory = tuple(self.inventory)
        if self.rate_hz not in (25.0, 50.0):
            raise ValueError(f"rate_hz={self.rate_hz}: choose 25 or 50")
        if len(self.inventory) < 3 or self.inventory[0] != PAUSE or self.inventory[-1] != OTHER \
                or len(set(self.inventory)) != len(self.inventory):
            raise ValueError(f"inventory: {len(self.inventory)} phonemes; it must start with {PAUSE!r}, end with "
                             f"{OTHER!r} and name each phoneme once")

    @property
    def k(self) -> int:
        return len(self.inventory)

    @property
    def name(self) -> str:
        return f"{PHONE_UNITS_KIND}-{self.rate_hz:g}hz-k{self.k}"

    @cached_property
    def _ids(self) -> dict[str, int]:
        return {phoneme: unit for unit, phoneme in enumerate(self.inventory)}

    @cached_property
    def checkpoint_sha256(self) -> str:
        return hashlib.sha256(json.dumps({"kind": PHONE_UNITS_KIND, "rate_hz": self.rate_hz,
                                          "inventory": list(self.inventory)}, ensure_ascii=False).encode()).hexdigest()

    @property
    def provenance(self) -> UnitProvenance:
        return UnitProvenance(self.name, self.checkpoint_sha256, "oracle-phones", 0, self.rate_hz)

    def encode_phonemes(self, phonemes: list[dict], duration_s: float) -> np.ndarray:
        """One unit per frame of `duration_s` ({phoneme, start_s, end_s} records, as the corpus and the dataset
        store them): the frames that Whisper's tokenizer gives the same audio, `int(duration_s * rate_hz)`."""
        labels = frame_labels(phonemes, int(duration_s * self.rate_hz), self.rate_hz) if phonemes else []
        other = self.k - 1
        return np.array([self._ids.get(label or PAUSE, other) for label in labels], dtype=np.int64)

    def encode_record(self, record: dict) -> np.ndarray:
        """The units of a dataset row, from its `phonemes` field."""
        if not record.get("phonemes"):
            raise ValueError(f"known_id={record.get('known_id')}: field 'phonemes' is empty: oracle phone units are "
                             "read from the synthesiser's phoneme times; rebuild the dataset with a Piper voice "
                             "(`known-speech build`, stages version 4 or later)")
        return self.encode_phonemes(record["phonemes"], record["duration_s"])

    def encode(self, waveform: np.ndarray) -> np.ndarray:
        raise ValueError(f"{self.name}: oracle phone units come from the synthesiser's phoneme times, not from audio; "
                         "give a row with 'phonemes' (encode_record)")

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / TOKENIZER_FILE, json.dumps(
            {"kind": PHONE_UNITS_KIND, "name": self.name, "rate_hz": self.rate_hz, "k": self.k,
             "inventory": list(self.inventory), "checkpoint_sha256": self.checkpoint_sha256,
             "fitted_on": self.fitted_on}, indent=2, ensure_ascii=False))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "PhoneUnitTokenizer":
        path = Path(folder) / TOKENIZER_FILE
        try:
            description = json.loads(path.read_text(encoding="utf-8"))
            tokenizer = cls(tuple(description["inventory"]), float(description["rate_hz"]),
                            description.get("fitted_on", {}))
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"unit tokenizer {folder}: {TOKENIZER_FILE} could not be read as oracle phone units "
                             f"({err})") from err
        if description.get("checkpoint_sha256") != tokenizer.checkpoint_sha256:
            raise ValueError(f"unit tokenizer {folder}: its inventory or rate does not match the sha256 it records: "
                             "the folder was altered")
        return tokenizer


def fit_phone_tokenizer(timelines: list[list[dict]], rate_hz: float = 25.0,
                        fitted_on: dict | None = None) -> PhoneUnitTokenizer:
    """The inventory of the phonemes voiced in `timelines`, most frequent first after the pause."""
    counts = Counter(p["phoneme"] for timeline in timelines for p in timeline if p["phoneme"] not in (PAUSE, OTHER))
    if not counts:
        raise ValueError("no phonemes to fit oracle phone units on: the corpus rows hold no phoneme times")
    inventory = (PAUSE, *(phoneme for phoneme, _ in counts.most_common()), OTHER)
    return PhoneUnitTokenizer(inventory, rate_hz, {**(fitted_on or {}), "utterances": len(timelines),
                                                   "phonemes": int(sum(counts.values()))})
