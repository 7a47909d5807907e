"""The tokens `spirit-smollm2` adds to SmolLM2's vocabulary, in Spirit LM's format: "[Text]", "[Speech]" and
one "[HuN]" per unit (Spirit LM names its HuBERT units so; here unit N of the model's Whisper k-means
tokenizer), appended after SmolLM2's 49,152 ids in that order, so the ids follow from the unit count."""

from __future__ import annotations

from known_speech.units import SPEECH_MARKER, TEXT_MARKER, SpeechToken

__all__ = ["added_tokens", "extend_tokenizer", "unit_token", "END_OF_TEXT", "end_of_text_id"]

# what closes a transcript: SmolLM2's document separator, named rather than taken from `eos_token`, which
# transformers' GGUF conversion has set to different tokens in different versions
END_OF_TEXT = "<|endoftext|>"


def unit_token(unit: int) -> str:
    return SpeechToken("Hu", int(unit), 0).text


def added_tokens(num_units: int) -> list[str]:
    return [TEXT_MARKER, SPEECH_MARKER] + [unit_token(u) for u in range(num_units)]


def extend_tokenizer(tokenizer, num_units: int):
    """Add the markers and unit tokens (as special tokens: matched whole, never split by BPE) and check
    that they take the ids right after the base vocabulary."""
    base = len(tokenizer)
    tokens = added_tokens(num_units)
    tokenizer.add_tokens(tokens, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if ids != list(range(base, base + len(tokens))):
        raise ValueError(f"the tokenizer gave the added tokens ids {ids[:3]}..., not {base}.. in order: it already "
                         f"holds some of them")
    return tokenizer


def end_of_text_id(tokenizer) -> int:
    token_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    if token_id is None or tokenizer.convert_ids_to_tokens(int(token_id)) != END_OF_TEXT:
        raise ValueError(f"the tokenizer has no {END_OF_TEXT} token: not SmolLM2's vocabulary")
    return int(token_id)
