"""One spoken Known item through every stage: spoken form, synthesis, ASR check, alignment, units."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from known_speech.audio import (
    TARGET_SAMPLE_RATE,
    Normalisation,
    decode_audio,
    encode_flac,
    normalise_peak,
    to_mono_16k,
)
from known_speech.source import KnownRecord
from known_speech.spans import SPEECH_TOKENIZER_RATES, AlignedWord, TokenSpan, frame_span, time_span_of_chars
from known_speech.spoken import verbalise
from known_speech.units import dedup_span, deduplicate

from .align.qc import compare_alignments
from .align.result import Alignment, AlignmentResult, EstimatedAlignment
from .align.tts import words_from_synthesis
from .align.whisper import words_from_whisper
from .asr import AsrCheck, heard_other_speech, voiced_seconds
from .cache import ItemOutcome
from .options import BuildOptions
from .tts.base import VoiceInfo

__all__ = ["ItemBuilder", "SpokenRow", "speech_token_spans", "UNIT_SPAN"]

logger = logging.getLogger(__name__)

UNIT_SPAN = "hubert-25hz"  # the speech_token_spans entry the unit tokenizer fills
SILENT_PEAK = 1e-3  # audio whose peak stays below this (-60 dBFS) holds no speech
MIN_VOICED_SHARE = 0.2  # audio whose voice activity covers less of it holds no speech (Known prompts: about 0.6-0.9)


@dataclass(frozen=True)
class SpokenRow:
    """A row of the dataset but its audio (schema: known_speech.schema.record_features): the Known record
    (with `prediction`, GPT-2-XL's completion in ROME's data: a baseline) and what the build made of it."""

    record: KnownRecord
    spoken_text: str
    duration_s: float
    normalisation: Normalisation
    voice: VoiceInfo
    words: list[AlignedWord]
    phonemes: list[tuple[str, float, float]]  # (phoneme, start_s, end_s) as the synthesiser voiced them
    subject_char_span: tuple[int, int]
    subject_time_span: tuple[float, float]
    speech_token_spans: list[TokenSpan]
    alignment: Alignment
    estimated_alignments: list[EstimatedAlignment]
    asr: AsrCheck

    def to_dict(self) -> dict:
        return {
            **self.record.to_dict(), "spoken_text": self.spoken_text,
            "duration_s": self.duration_s, "normalisation": self.normalisation.to_dict(), "voice": self.voice.to_dict(), "words": [w.to_dict() for w in self.words],
            "phonemes": [{"phoneme": p, "start_s": s, "end_s": e} for p, s, e in self.phonemes],
            "subject_char_span": list(self.subject_char_span), "subject_time_span": list(self.subject_time_span),
            "speech_token_spans": [span.to_dict() for span in self.speech_token_spans],
            "alignment": self.alignment.to_dict(),
            "estimated_alignments": [estimate.to_dict() for estimate in self.estimated_alignments],
            "asr": self.asr.to_dict(),
        }


def speech_token_spans(subject_time_span: tuple[float, float]) -> list[TokenSpan]:
    return [
        TokenSpan(name, rate, *frame_span(*subject_time_span, rate)) for name, rate in SPEECH_TOKENIZER_RATES.items()
    ]


def _within(phonemes: list[tuple[str, float, float]], duration_s: float) -> list[tuple[str, float, float]]:
    """The synthesiser's phoneme times cut to the stored audio: resampled to 16 kHz it can end up to a sample of the
    synthesiser's rate sooner than the last phoneme (a pause) says."""
    return [(p, start, min(end, duration_s)) for p, start, end in phonemes if start < duration_s]


def _mean_score(words: list[AlignedWord]) -> float:
    return float(np.mean([w.score for w in words]))


class ItemBuilder:
    """Holds the loaded TTS engine, ASR model, aligners and unit tokenizer of one process."""

    def __init__(self, options: BuildOptions):
        from .align.ctc import CTCAligner
        from .asr import WhisperChecker
        from .tts import create_engine

        self.options = options
        self.engine = create_engine(options.engine, options.voice)
        self.asr = WhisperChecker(options.asr_model)
        self.ctc = CTCAligner(options.ctc_model) if "ctc" in options.aligners else None
        self.units = None
        if options.unit_tokenizer:
            from known_speech.unit_tokenizer import load_unit_tokenizer

            self.units = load_unit_tokenizer(options.unit_tokenizer)

    def _align(self, spoken, synthesis, asr, samples, subject_chars) -> AlignmentResult:
        """The row's words (the synthesiser's exact times where it has them, else the first estimate:
        CTC, then Whisper) and the estimated alignments, scored against the exact one where it exists."""
        duration = samples.size / TARGET_SAMPLE_RATE
        estimates: dict[str, tuple[str, list[AlignedWord]]] = {}
        if self.ctc is not None:
            estimates["ctc"] = (self.ctc.model_name, self.ctc.align(spoken, samples))
        if "whisper" in self.options.aligners and asr.words:
            estimates["whisper"] = (self.asr.model_name, words_from_whisper(spoken, list(asr.words), duration))
        if synthesis.word_times_s is None:
            if not estimates:
                raise ValueError("the engine reports no word durations and no aligner produced word times")
            method, (model, words) = next(iter(estimates.items()))
            return AlignmentResult(words, Alignment(method, model, _mean_score(words), None))
        words = words_from_synthesis(spoken, synthesis)
        estimated = [EstimatedAlignment(method, model, heard, compare_alignments(words, heard, subject_chars))
                     for method, (model, heard) in estimates.items()]
        return AlignmentResult(words, Alignment("tts", self.engine.info.voice, _mean_score(words), 0.0), estimated)

    def _speech_token_spans(self, samples, subject_time) -> list[TokenSpan]:
        spans = speech_token_spans(subject_time)
        if self.units is None:
            return spans
        units = self.units.encode(samples)
        _, run_starts = deduplicate(units)
        provenance = self.units.provenance
        filled = []
        for span in spans:
            if span.tokenizer == UNIT_SPAN:
                dedup = dedup_span(run_starts, span.frame_start, min(span.frame_end, len(units)), len(units))
                span = TokenSpan(span.tokenizer, span.rate_hz, span.frame_start, span.frame_end, tuple(units.tolist()),
                                 *dedup, provenance.tokenizer, provenance.checkpoint_sha256, provenance.quantizer)
            filled.append(span)
        return filled

    def build(self, record: KnownRecord) -> tuple[ItemOutcome, bytes | None]:
        started = time.perf_counter()
        stage = "verbalise"
        version = self.engine.info.engine_version
        try:
            spoken = verbalise(record.prompt)
            if len(spoken.words) > self.options.max_words:
                raise ValueError(f"the prompt has {len(spoken.words)} spoken words, more than the limit of "
                                 f"{self.options.max_words} (--max-words)")
            subject_chars = record.subject_char_span
            stage = "synthesis"
            synthesis = self.engine.synthesize(spoken, known_id=record.known_id)
            samples = to_mono_16k(synthesis.samples, synthesis.sample_rate)
            if samples.size == 0 or not np.isfinite(samples).all():
                raise RuntimeError("synthesised audio is empty or not finite")
            peak = float(np.abs(samples).max())
            if peak < SILENT_PEAK:
                raise ValueError(f"the audio is silent (peak {peak:.2g}); it holds no speech to align")
            samples, normalisation = normalise_peak(samples)
            duration = samples.size / TARGET_SAMPLE_RATE
            stage = "asr"
            asr = self.asr.check(samples, spoken.text, spoken.spoken_text_in(*subject_chars))
            if heard_other_speech(spoken.text, asr.transcript):
                # with the synthesiser's own word times a misheard voice is still the prompt spoken (espeak-ng:
                # "Alexa Internet's owner," -> "Let's get into next order."); only audio without voice activity fails
                if synthesis.word_times_s is None:
                    raise ValueError(f"Whisper heard {asr.transcript!r}, no word of the prompt nor anything like it: the "
                                     f"audio may hold no speech, or other speech, and an alignment of it would be invented")
                voiced = voiced_seconds(samples)
                if voiced < MIN_VOICED_SHARE * duration:
                    raise ValueError(f"Whisper heard {asr.transcript!r} and the audio holds {voiced:.2f} s of voice "
                                     f"activity in {duration:.2f} s: no speech")
            stage = "alignment"
            aligned = self._align(spoken, synthesis, asr, samples, subject_chars)
            subject_time = time_span_of_chars(aligned.words, *subject_chars)
            if not 0 <= subject_time[0] < subject_time[1] <= duration + 1e-6:
                raise ValueError(f"subject time span {subject_time} is empty or outside the audio ({duration:.3f} s)")
            stage = "units"
            flac = encode_flac(samples)
            # units of the audio as stored (16-bit FLAC), so they equal what tokenizing the row's audio gives
            token_spans = self._speech_token_spans(decode_audio(flac)[0] if self.units else samples, subject_time)
        except Exception as err:  # recorded with its stage; the build goes on
            reason = f"{type(err).__name__}: {err}"
            if isinstance(err, MemoryError):
                reason += f" (more memory than a worker may use: --item-memory-gb {self.options.item_memory_gb})"
            logger.warning("known_id=%s failed at %s: %s", record.known_id, stage, reason)
            return ItemOutcome(record.known_id, "failed", stage=stage, reason=reason,
                               seconds=time.perf_counter() - started, engine_version=version), None
        row = SpokenRow(
            record, spoken.reading, duration, normalisation, replace(self.engine.info, seed=synthesis.seed), aligned.words,
            _within(synthesis.phonemes or [], duration), subject_chars,
            subject_time, token_spans, aligned.alignment, aligned.estimated, asr)
        outcome = ItemOutcome(record.known_id, "ok", row=row.to_dict(), seconds=time.perf_counter() - started,
                              engine_version=version)
        return outcome, flac
