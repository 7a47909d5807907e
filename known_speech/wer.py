"""Word error rate as the ASR check and spirit-smollm2's held-out transcription measure it: reference and
transcript both through Whisper's English normaliser (from `transformers`), so "seventy-seven" and "77"
compare equal; the rate is jiwer's."""

from __future__ import annotations

__all__ = ["normalise_text", "word_error_rate", "corpus_word_error_rate"]

_normaliser = None


def normalise_text(text: str) -> str:
    """Whisper's English normalisation (numbers to digits, spelling, punctuation, case)."""
    global _normaliser
    if _normaliser is None:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        # The British-to-American spelling map ships with Whisper's tokenizer on the Hub; the
        # normaliser works without it, leaving spelling variants as they are.
        _normaliser = EnglishTextNormalizer({})
    return _normaliser(text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    reference, hypothesis = normalise_text(reference), normalise_text(hypothesis)
    if not reference.strip():
        raise ValueError("reference is empty after normalisation")
    return float(jiwer.wer(reference, hypothesis))


def corpus_word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Errors over all references' words (jiwer over the lists), not a mean of per-utterance rates."""
    import jiwer

    return float(jiwer.wer([normalise_text(r) for r in references], [normalise_text(h) for h in hypotheses]))
