"""The Known source: load and validate the factual prompts (known_1000.json format)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

__all__ = [
    "HELD_OUT_FROM",
    "KNOWN_SHA256",
    "KNOWN_URL",
    "KnownRecord",
    "KnownSourceError",
    "bundled_source_path",
    "file_sha256",
    "known_split",
    "load_known",
    "subject_start",
    "subject_starts",
]

logger = logging.getLogger(__name__)

# The canonical copy, published with the ROME code (MIT, Copyright (c) 2022 Kevin Meng).
KNOWN_URL = "https://rome.baulab.info/data/dsets/known_1000.json"
KNOWN_SHA256 = "61daca55318bb5260c1e62e133debef9102c7b278bbc7b19dd2ac655543f333a"

_REQUIRED_FIELDS: dict[str, type] = {
    "known_id": int,
    "subject": str,
    "attribute": str,
    "template": str,
    "prompt": str,
    "relation_id": str,
}


# Known prompts with known_id >= HELD_OUT_FROM are held out: nothing is chosen or tuned on them (no model, setting,
# bound or recipe); each shipped model's figures on them are measured once. Development uses known_id < 600.
HELD_OUT_FROM = 600


def known_split(known_id: int) -> str:
    """"dev" (known_id < 600: develop, tune and choose here) or "held-out" (known_id >= 600: report only)."""
    return "dev" if int(known_id) < HELD_OUT_FROM else "held-out"


class KnownSourceError(ValueError):
    """A source record is malformed; the message names the record and the field."""


# known_id is an int32 column of the dataset
KNOWN_ID_RANGE = (-(2**31), 2**31 - 1)
# scripts written without spaces between words: the spoken form, the subject's words and the alignment all
# work on whitespace-separated words, so such prompts need a word segmenter first
_SPACELESS = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
                        "\uf900-\ufaff\uff66-\uff9f]")


def subject_starts(prompt: str, subject: str) -> list[int]:
    """Where the subject occurs as whole words ("2" is not inside "3.2.1"), in order."""
    starts = []
    for match in re.finditer(re.escape(subject), prompt):
        before = prompt[match.start() - 1] if match.start() else " "
        after = prompt[match.end()] if match.end() < len(prompt) else " "
        if not (before.isalnum() or (before in ".," and match.start() > 1 and prompt[match.start() - 2].isdigit())) \
                and not (after.isalnum() or (after in ".," and match.end() + 1 < len(prompt)
                                              and prompt[match.end() + 1].isdigit())):
            starts.append(match.start())
    return starts


def subject_start(prompt: str, subject: str) -> int:
    """Where the subject first occurs as whole words; -1 if nowhere."""
    return next(iter(subject_starts(prompt, subject)), -1)


@dataclass(frozen=True)
class KnownRecord:
    """One Known fact: `prompt` contains `subject` and should be completed by `attribute`."""

    known_id: int
    subject: str
    attribute: str
    template: str
    prompt: str
    relation_id: str
    prediction: str = ""

    @property
    def subject_char_span(self) -> tuple[int, int]:
        """[start, end) of the subject's first occurrence as whole words in the prompt, in characters."""
        start = subject_start(self.prompt, self.subject)
        return start, start + len(self.subject)

    def to_dict(self) -> dict:
        return asdict(self)


def bundled_source_path() -> Path:
    return Path(str(files("known_speech").joinpath("data/known_1000.json")))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (a model file need not fit in memory twice)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _validate(raw: object, index: int, source: Path) -> KnownRecord:
    where = f"{source.name} record #{index}"
    if not isinstance(raw, dict):
        raise KnownSourceError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    if "known_id" in raw:
        where = f"{source.name} record #{index} (known_id={raw['known_id']!r})"
    for field, expected in _REQUIRED_FIELDS.items():
        if field not in raw:
            raise KnownSourceError(f"{where}: missing required field {field!r}")
        value = raw[field]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise KnownSourceError(
                f"{where}: field {field!r} must be {expected.__name__}, got {type(value).__name__} {value!r}"
            )
        if expected is str and not value.strip():
            raise KnownSourceError(f"{where}: field {field!r} is empty")
    if not KNOWN_ID_RANGE[0] <= raw["known_id"] <= KNOWN_ID_RANGE[1]:
        raise KnownSourceError(f"{where}: field 'known_id' must fit a 32-bit integer ({KNOWN_ID_RANGE[0]}.."
                               f"{KNOWN_ID_RANGE[1]})")
    if raw["subject"] not in raw["prompt"]:
        raise KnownSourceError(
            f"{where}: field 'subject' ({raw['subject']!r}) does not occur in field 'prompt' ({raw['prompt']!r})"
        )
    if _SPACELESS.search(raw["prompt"]):
        raise KnownSourceError(f"{where}: field 'prompt' ({raw['prompt']!r}) is in a script written without spaces "
                               f"between words; known-speech works on whitespace-separated words and has no "
                               f"word segmenter for it yet")
    if subject_start(raw["prompt"], raw["subject"]) < 0:
        raise KnownSourceError(f"{where}: field 'subject' ({raw['subject']!r}) occurs in field 'prompt' "
                               f"({raw['prompt']!r}) only inside a word or number")
    prediction = raw.get("prediction", "")
    return KnownRecord(
        known_id=raw["known_id"],
        subject=raw["subject"],
        attribute=raw["attribute"],
        template=raw["template"],
        prompt=raw["prompt"],
        relation_id=raw["relation_id"],
        prediction=prediction if isinstance(prediction, str) else "",
    )


def load_known(path: str | Path | None = None) -> list[KnownRecord]:
    """Load and validate a Known-format JSON list; the bundled known_1000.json by default.

    Raises `KnownSourceError` naming the record and field of the first problem found.
    """
    source = Path(path) if path is not None else bundled_source_path()
    try:
        raw_records = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise KnownSourceError(f"{source}: not valid JSON ({err})") from err
    if not isinstance(raw_records, list):
        raise KnownSourceError(f"{source}: expected a JSON list of records, got {type(raw_records).__name__}")
    records = [_validate(raw, index, source) for index, raw in enumerate(raw_records)]
    first_index: dict[int, int] = {}
    for index, record in enumerate(records):
        if record.known_id in first_index:
            raise KnownSourceError(
                f"{source.name} record #{index} (known_id={record.known_id}): field 'known_id' duplicates "
                f"record #{first_index[record.known_id]}"
            )
        first_index[record.known_id] = index
    if path is None and file_sha256(source) != KNOWN_SHA256:
        logger.warning("bundled %s does not match the canonical sha256 %s", source, KNOWN_SHA256)
    return records
