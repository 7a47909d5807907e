"""One spoken form per prompt: what the TTS engine reads, ASR is scored against, and aligners align.

Numbers and symbols are verbalised once, up front ("LGA 775" -> "LGA seven hundred seventy-five",
"&" -> "and", "Gregory XII" -> "Gregory the Twelfth", "Final Fantasy III" -> "Final Fantasy Three"),
and every spoken word keeps the character span of the written word it came from, so timings found on
the spoken words map back to the written prompt. `reading` keeps the punctuation that marks a phrase
break (a pause for the TTS); `text` is the same words without it (what ASR is scored against).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from num2words import num2words

__all__ = ["SpokenForm", "SpokenWord", "WrittenWord", "verbalise", "number_to_words", "money_to_words", "roman_value",
           "name_numeral"]

_SYMBOL_WORDS = {"&": "and", "%": "percent", "+": "plus", "@": "at", "#": "number"}
_PAUSES = ",;:.!?—–"  # punctuation after a word that marks a phrase break
# Roman numerals of names, 1 to 39 (I, V and X only: "CD", "L'", "C-135" are not numerals here)
_ROMAN = re.compile(r"(X{0,3})(IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10}
# after these a numeral counts (a sequel, a version, a part): "Final Fantasy Three", "OS Ten", "World War Two";
# after any other name it is an ordinal: "Gregory the Twelfth", "Louis the Seventeenth"
_COUNTING_WORDS = {"fantasy", "legend", "legends", "pro", "os", "secolo", "war", "wars", "part", "episode", "chapter",
                   "volume", "vol", "act", "book", "mark", "mk", "type", "version", "phase", "saga", "quest", "kombat",
                   "fighter", "rocky", "world", "game", "season", "series", "edition"}
# capitalised words after which "I" is the pronoun, not a numeral
_NOT_NAMES = {"then", "and", "but", "so", "when", "if", "as", "what", "where", "why", "how", "yes", "no", "now",
              "today", "here", "there", "that", "this", "because", "while", "after", "before", "since", "until"}
# a currency sign before a number: (one unit, many units, one hundredth, many hundredths)
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", "sen", "sen")}
_MONEY = re.compile(r"([$€£¥])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{2}))?")
_EDGE_PUNCTUATION = "\"'“”‘’()[]{}<>,.;:!?¿¡«»—–-/\\|*…"
# digit groups with thousands separators or a decimal part, then an optional suffix
_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(st|nd|rd|th|s|'s)?", re.IGNORECASE)
_PIECES = re.compile(r"\d{1,3}(?:,\d{3})+(?:st|nd|rd|th|s|'s)?|\d+(?:\.\d+)?(?:st|nd|rd|th|s|'s)?|[&%+@#]|[^\d&%+@#]+")


@dataclass(frozen=True)
class WrittenWord:
    """A whitespace-separated word of the prompt, edge punctuation stripped; `pause` is the phrase-break
    punctuation right after it ("," in "Gregory XII, whose")."""

    text: str
    char_start: int
    char_end: int
    pause: str = ""


@dataclass(frozen=True)
class SpokenWord:
    """One word as read aloud, and the written word (by index) it verbalises."""

    text: str
    written_index: int


@dataclass(frozen=True)
class SpokenForm:
    written: str
    written_words: tuple[WrittenWord, ...]
    words: tuple[SpokenWord, ...]

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    @property
    def reading(self) -> str:
        """What the TTS reads: the spoken words, each written word's phrase-break punctuation after its last."""
        parts = []
        for index, word in enumerate(self.words):
            last = index + 1 == len(self.words) or self.words[index + 1].written_index != word.written_index
            parts.append(word.text + (self.written_words[word.written_index].pause if last else ""))
        return " ".join(parts)

    def written_indices_in(self, char_start: int, char_end: int) -> list[int]:
        """Written words overlapping the character range [char_start, char_end)."""
        return [
            index
            for index, word in enumerate(self.written_words)
            if word.char_start < char_end and char_start < word.char_end
        ]

    def spoken_indices_in(self, char_start: int, char_end: int) -> list[int]:
        written = set(self.written_indices_in(char_start, char_end))
        return [index for index, word in enumerate(self.words) if word.written_index in written]

    def spoken_text_in(self, char_start: int, char_end: int) -> str:
        return " ".join(self.words[index].text for index in self.spoken_indices_in(char_start, char_end))


def _plural_number_words(words: str) -> str:
    # "nineteen eighty" -> "nineteen eighties", "six" -> "sixes"
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith(("x", "s")):
        return words + "es"
    return words + "s"


def number_to_words(digits: str, suffix: str = "", standalone: bool = True) -> str:
    """Verbalise one number as American English ("775" -> "seven hundred seventy-five").

    A standalone four-digit number from 1100 to 2099 reads as a year ("1980" -> "nineteen eighty"),
    "1980s" as a decade, "21st" as an ordinal; num2words does the work.
    """
    suffix = (suffix or "").lower()
    plain = digits.replace(",", "")
    if "." in plain:
        whole, fraction = plain.split(".")
        digit_words = " ".join("oh" if digit == "0" else num2words(int(digit)) for digit in fraction)
        words = f"{num2words(int(whole))} point {digit_words}"
    else:
        value = int(plain)
        is_year = standalone and len(plain) == 4 and 1100 <= value <= 2099 and "," not in digits
        if suffix in ("st", "nd", "rd", "th"):
            words = num2words(value, to="ordinal")
        elif is_year:
            words = num2words(value, to="year")
        else:
            words = num2words(value)
        if suffix in ("s", "'s"):
            # decades ("1980s", "90s") are plurals; "iPhone 4s" is a letter
            words = _plural_number_words(words) if value >= 10 and value % 10 == 0 else f"{words} S"
    words = words.replace(",", "").replace(" and ", " ")
    return words


def money_to_words(sign: str, whole: str, cents: str | None = None) -> str:
    """"$5" -> "five dollars", "$1.50" -> "one dollar fifty cents", "£2" -> "two pounds"."""
    one, many, one_cent, many_cents = _CURRENCIES[sign]
    value = int(whole.replace(",", ""))
    words = f"{number_to_words(whole, standalone=False)} {one if value == 1 else many}"
    if cents and int(cents):
        words += f" {number_to_words(cents.lstrip('0'), standalone=False)} {one_cent if int(cents) == 1 else many_cents}"
    return words


def roman_value(text: str) -> int | None:
    """1..39 for a canonical Roman numeral of I, V and X; None otherwise."""
    if not text or not _ROMAN.fullmatch(text):
        return None
    values = [_ROMAN_VALUES[c] for c in text]
    return sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))


def _title(words: str) -> str:
    return " ".join("-".join(part.capitalize() for part in word.split("-")) for word in words.split())


def name_numeral(text: str, previous: str | None) -> list[str] | None:
    """The spoken words of a Roman numeral after a name ("Gregory XII" -> the Twelfth, "Fantasy III" ->
    Three), or None when `text` is no numeral here (no capitalised name before it, or the pronoun "I")."""
    value = roman_value(text)
    if value is None or not previous or not previous[0].isupper():
        return None
    if text == "I" and previous.lower() in _NOT_NAMES:
        return None
    if previous.lower() in _COUNTING_WORDS or (previous.isupper() and len(previous) > 1):
        return _title(num2words(value)).split()
    return ["the", *_title(num2words(value, to="ordinal")).split()]


def _verbalise_word(text: str) -> list[str]:
    money = _MONEY.fullmatch(text)
    if money:
        return money_to_words(*money.groups()).split()
    pieces = _PIECES.findall(text)
    spoken: list[str] = []
    for piece in pieces:
        if piece in _SYMBOL_WORDS:
            spoken.append(_SYMBOL_WORDS[piece])
            continue
        match = _NUMBER.fullmatch(piece)
        if match:
            standalone = len(pieces) == 1
            spoken.extend(number_to_words(match.group(1), match.group(2) or "", standalone).split())
            continue
        piece = piece.strip(_EDGE_PUNCTUATION)
        if piece:
            spoken.append(piece)
    return spoken


def verbalise(prompt: str) -> SpokenForm:
    """The spoken form of a written prompt, with the map from spoken words to written words."""
    written_words: list[WrittenWord] = []
    spoken_words: list[SpokenWord] = []
    previous: str | None = None
    for match in re.finditer(r"\S+", prompt):
        raw = match.group(0)
        stripped = raw.strip(_EDGE_PUNCTUATION)
        if not stripped:
            continue
        offset = raw.find(stripped)
        spoken = name_numeral(stripped, previous) or _verbalise_word(stripped)
        previous = stripped if not raw.endswith(tuple(_PAUSES)) else None  # a numeral follows its name directly
        if not spoken:
            continue
        start = match.start() + offset
        trailing = raw[offset + len(stripped):]
        pause = next((c for c in trailing if c in _PAUSES), "")
        written_words.append(WrittenWord(stripped, start, start + len(stripped), pause))
        spoken_words.extend(SpokenWord(word, len(written_words) - 1) for word in spoken)
    return SpokenForm(prompt, tuple(written_words), tuple(spoken_words))
