"""CTC segmentation (Kürzinger et al., 2020; the `ctc-segmentation` package) over a `transformers` CTC model.

The paper's aligner: emissions of facebook/hubert-large-ls960-ft (or any HubertForCTC / Wav2Vec2ForCTC by
name or path), the spoken form normalised to the model's alphabet one spoken word at a time, so that
every aligned word maps back to the written word it voices ("775" -> SEVEN HUNDRED SEVENTY|FIVE -> "775").
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from known_speech.audio import TARGET_SAMPLE_RATE
from known_speech.settings import DEFAULT_CTC_MODEL
from known_speech.spans import AlignedWord
from known_speech.spoken import SpokenForm

from .tts import written_words_from_spoken_times

__all__ = ["ModelWord", "to_model_alphabet", "segment_words", "CTCAligner"]



@dataclass(frozen=True)
class ModelWord:
    """A spoken word in the CTC model's alphabet, with the written word it came from."""

    text: str
    token_ids: tuple[int, ...]
    written_index: int


def _fold(text: str) -> str:
    """Accents folded ("Kyōto" -> "Kyoto", "Røed" -> "Roed"), as far as NFKD and a few letters allow."""
    text = text.replace("ø", "o").replace("Ø", "O").replace("ß", "ss").replace("æ", "ae").replace("Æ", "AE")
    text = text.replace("ł", "l").replace("Ł", "L").replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def to_model_alphabet(spoken: SpokenForm, vocab: dict[str, int], delimiter: str = "|") -> list[ModelWord]:
    """One ModelWord per spoken word; hyphens and inner spaces become the word delimiter, other symbols go.

    Raises ValueError naming the word when nothing of it is in the alphabet."""
    letters = [token for token in vocab if len(token) == 1 and token.isalpha()]
    upper = sum(token.isupper() for token in letters) >= sum(token.islower() for token in letters)
    words: list[ModelWord] = []
    for word in spoken.words:
        folded = _fold(word.text)
        folded = folded.upper() if upper else folded.lower()
        pieces = [piece for piece in (folded.replace("-", " ").split()) if piece]
        text = delimiter.join("".join(c for c in piece if c in vocab) for piece in pieces).strip(delimiter)
        if not text.replace(delimiter, ""):
            raise ValueError(f"spoken word {word.text!r} has no character in the CTC model's alphabet")
        words.append(ModelWord(text, tuple(vocab[c] for c in text), word.written_index))
    return words


def segment_words(log_probs: np.ndarray, words: list[ModelWord], seconds_per_frame: float, blank: int,
                  delimiter_id: int, char_list: list[str]) -> list[tuple[float, float, float]]:
    """(start_s, end_s, confidence) per word: CTC segmentation over (frames, vocab) log-probabilities.

    The word delimiter is what a character CTC model emits between words, so it is scored as the blank
    that ctc-segmentation puts between utterances (log-sum of the two columns), and a delimiter inside a
    word ("SEVENTY|FIVE") becomes a blank state. A word starts where its first token starts and ends
    where the blank after it starts."""
    from ctc_segmentation import (
        CtcSegmentationParameters,
        ctc_segmentation,
        determine_utterance_segments,
        prepare_token_list,
    )

    log_probs = log_probs.astype(np.float64).copy()
    log_probs[:, blank] = np.logaddexp(log_probs[:, blank], log_probs[:, delimiter_id])
    config = CtcSegmentationParameters(blank=blank, index_duration=seconds_per_frame, char_list=char_list)
    config.min_window_size = max(config.min_window_size, log_probs.shape[0])
    utterances = [np.array([blank if t == delimiter_id else t for t in w.token_ids], dtype=np.int64) for w in words]
    ground_truth, begins = prepare_token_list(config, utterances)
    timings, char_probs, _ = ctc_segmentation(config, log_probs.astype(np.float32), ground_truth)
    confidences = [segment[2] for segment in determine_utterance_segments(config, begins, char_probs, timings,
                                                                          ["x"] * len(words))]
    return [(float(timings[begins[i] + 1]), float(timings[begins[i + 1]]), float(np.exp(min(0.0, confidences[i]))))
            for i in range(len(words))]


class CTCAligner:
    """Word times from a CTC acoustic model loaded with `transformers` (`from_pretrained`, name or path)."""

    def __init__(self, model_name: str = DEFAULT_CTC_MODEL, device: str = "cpu"):
        import torch
        from transformers import AutoModelForCTC, AutoProcessor

        from known_speech.progress import follow_terminal

        follow_terminal()
        self.model_name = model_name
        self.processor = AutoProcessor.from_pretrained(model_name)
        self.model = AutoModelForCTC.from_pretrained(model_name).to(device).eval()
        tokenizer = self.processor.tokenizer
        self.vocab = tokenizer.get_vocab()
        self.char_list = [token for token, _ in sorted(self.vocab.items(), key=lambda item: item[1])]
        self.blank = tokenizer.pad_token_id
        self.delimiter = tokenizer.word_delimiter_token or "|"
        self.device, self._torch = device, torch

    def log_probs(self, samples_16k: np.ndarray) -> np.ndarray:
        inputs = self.processor(samples_16k, sampling_rate=TARGET_SAMPLE_RATE, return_tensors="pt")
        with self._torch.no_grad():
            logits = self.model(inputs["input_values"].to(self.device)).logits[0]
        return self._torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    def align(self, spoken: SpokenForm, samples_16k: np.ndarray) -> list[AlignedWord]:
        words = to_model_alphabet(spoken, self.vocab, self.delimiter)
        log_probs = self.log_probs(samples_16k)
        seconds_per_frame = len(samples_16k) / TARGET_SAMPLE_RATE / log_probs.shape[0]
        spans = segment_words(log_probs, words, seconds_per_frame, self.blank, self.vocab[self.delimiter], self.char_list)
        return written_words_from_spoken_times(spoken, [(s, e) for s, e, _ in spans], [c for _, _, c in spans])
