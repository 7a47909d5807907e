"""Build one spoken Known item through every stage, and many items in parallel with a cache."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from known_speech.audio import TARGET_SAMPLE_RATE, encode_flac, to_mono_16k
from known_speech.settings import ALIGNERS, DEFAULT_ALIGNERS, DEFAULT_ASR_MODEL, DEFAULT_CTC_MODEL, DEFAULT_VOICE
from known_speech.source import KnownRecord
from known_speech.spans import SPEECH_TOKENIZER_RATES, TokenSpan, frame_span, time_span_of_chars
from known_speech.spoken import verbalise
from known_speech.unit_tokenizer import load_unit_tokenizer
from known_speech.units import dedup_span, deduplicate

from .align.ctc import CTCAligner
from .align.qc import compare_alignments
from .align.tts import words_from_synthesis
from .align.whisper import words_from_whisper
from .cache import ItemCache, ItemOutcome

__all__ = ["BuildOptions", "BuildSummary", "ItemBuilder", "build_items", "speech_token_spans"]

logger = logging.getLogger(__name__)

UNIT_SPAN = "hubert-25hz"  # the speech_token_spans entry the unit tokenizer fills


@dataclass(frozen=True)
class BuildOptions:
    engine: str = "piper"
    voice: str = DEFAULT_VOICE
    asr_model: str = DEFAULT_ASR_MODEL
    workers: int = 1
    retry_failed: bool = False
    aligners: tuple[str, ...] = DEFAULT_ALIGNERS
    ctc_model: str = DEFAULT_CTC_MODEL
    unit_tokenizer: str | None = None  # Spirit LM's hubert_25hz folder, or a HubertModel folder with its quantizer

    def __post_init__(self) -> None:
        unknown = set(self.aligners) - set(ALIGNERS)
        if unknown:
            raise ValueError(f"aligners={self.aligners}: choose from {ALIGNERS}")
        if self.workers < 1:
            raise ValueError(f"workers={self.workers}: need at least 1")

    @property
    def config_name(self) -> str:
        """The dataset config of this voice, e.g. `piper-en_US-joe-medium`."""
        voice = self.voice.rsplit("/", 1)[-1].removesuffix(".onnx")
        return f"{self.engine}-{voice}"


@dataclass
class BuildSummary:
    config_name: str
    items: int = 0
    built: int = 0
    reused: int = 0
    failed: int = 0
    total_audio_s: float = 0.0
    mean_wer: float | None = None
    subject_recognition_rate: float | None = None
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)
    # per estimated-alignment method: boundary error against the exact alignment and flagged items
    alignment_qc: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        ok = self.items - self.failed
        wer = f"{self.mean_wer:.3f}" if self.mean_wer is not None else "n/a"
        rate = f"{self.subject_recognition_rate:.1%}" if self.subject_recognition_rate is not None else "n/a"
        return (
            f"{self.config_name}: {ok}/{self.items} items ok ({self.built} built now, {self.reused} reused), "
            f"{self.failed} failed; audio {self.total_audio_s / 60:.1f} min; mean WER {wer}; "
            f"subject recognised {rate}; {self.seconds:.0f} s"
        )


def speech_token_spans(subject_time_span: tuple[float, float]) -> list[TokenSpan]:
    return [
        TokenSpan(name, rate, *frame_span(*subject_time_span, rate)) for name, rate in SPEECH_TOKENIZER_RATES.items()
    ]


class ItemBuilder:
    """Holds the loaded TTS engine and ASR model of one process."""

    def __init__(self, options: BuildOptions):
        from .asr import WhisperChecker
        from .tts import create_engine

        self.options = options
        self.engine = create_engine(options.engine, options.voice)
        self.asr = WhisperChecker(options.asr_model)
        self.ctc = CTCAligner(options.ctc_model) if "ctc" in options.aligners else None
        self.units = load_unit_tokenizer(options.unit_tokenizer) if options.unit_tokenizer else None

    def _align(self, spoken, synthesis, asr, samples, subject_chars):
        """The row's words (the synthesiser's exact times where it has them, else the first estimate:
        CTC, then Whisper) and the estimated alignments, scored against the exact one where it exists."""
        duration = samples.size / TARGET_SAMPLE_RATE
        estimates: dict[str, tuple[str, list]] = {}
        if self.ctc is not None:
            estimates["ctc"] = (self.ctc.model_name, self.ctc.align(spoken, samples))
        if "whisper" in self.options.aligners and asr.words:
            estimates["whisper"] = (self.asr.model_name, words_from_whisper(spoken, list(asr.words), duration))
        if synthesis.word_times_s is None:
            if not estimates:
                raise ValueError("the engine reports no word durations and no aligner produced word times")
            method, (model, words) = next(iter(estimates.items()))
            return words, {"method": method, "model": model, "mean_score": float(np.mean([w.score for w in words])),
                           "error_ms_vs_tts": None}, []
        words = words_from_synthesis(spoken, synthesis)
        alignment = {"method": "tts", "model": self.engine.info.voice,
                     "mean_score": float(np.mean([w.score for w in words])), "error_ms_vs_tts": 0.0}
        estimated = [{"method": method, "model": model, "words": [w.to_dict() for w in heard],
                      **compare_alignments(words, heard, subject_chars).to_dict()}
                     for method, (model, heard) in estimates.items()]
        return words, alignment, estimated

    def _speech_token_spans(self, samples, subject_time) -> list[dict]:
        spans = [span.to_dict() for span in speech_token_spans(subject_time)]
        if self.units is not None:
            units = self.units.encode(samples)
            _, run_starts = deduplicate(units)
            provenance = self.units.provenance
            for span in spans:
                if span["tokenizer"] == UNIT_SPAN:
                    frame_end = min(span["frame_end"], len(units))
                    span["units"] = units.tolist()
                    span["dedup_start"], span["dedup_end"] = dedup_span(run_starts, span["frame_start"], frame_end,
                                                                        len(units))
                    span.update(units_tokenizer=provenance.tokenizer, units_quantizer=provenance.quantizer,
                                units_checkpoint_sha256=provenance.checkpoint_sha256)
        return spans

    def build(self, record: KnownRecord) -> tuple[ItemOutcome, bytes | None]:
        started = time.perf_counter()
        stage = "verbalise"
        try:
            spoken = verbalise(record.prompt)
            subject_chars = record.subject_char_span
            stage = "synthesis"
            synthesis = self.engine.synthesize(spoken, known_id=record.known_id)
            samples = to_mono_16k(synthesis.samples, synthesis.sample_rate)
            if samples.size == 0 or not np.isfinite(samples).all():
                raise RuntimeError("synthesised audio is empty or not finite")
            duration = samples.size / TARGET_SAMPLE_RATE
            stage = "asr"
            asr = self.asr.check(samples, spoken.text, spoken.spoken_text_in(*subject_chars))
            stage = "alignment"
            words, alignment, estimated = self._align(spoken, synthesis, asr, samples, subject_chars)
            subject_time = time_span_of_chars(words, *subject_chars)
            if not 0 <= subject_time[0] < subject_time[1] <= duration + 1e-6:
                raise ValueError(f"subject time span {subject_time} is empty or outside the audio ({duration:.3f} s)")
            stage = "units"
            token_spans = self._speech_token_spans(samples, subject_time)
        except Exception as err:  # recorded with its stage; the build goes on
            logger.warning("known_id=%s failed at %s: %s", record.known_id, stage, err)
            return (
                ItemOutcome(record.known_id, "failed", stage=stage, reason=f"{type(err).__name__}: {err}",
                            seconds=time.perf_counter() - started),
                None,
            )
        row = {
            **{key: value for key, value in record.to_dict().items() if key != "prediction"},
            "spoken_text": spoken.text,
            "duration_s": duration,
            "voice": self.engine.info.to_dict(),
            "words": [word.to_dict() for word in words],
            "subject_char_span": list(subject_chars),
            "subject_time_span": list(subject_time),
            "speech_token_spans": token_spans,
            "alignment": alignment,
            "estimated_alignments": estimated,
            "asr": asr.to_dict(),
        }
        outcome = ItemOutcome(record.known_id, "ok", row=row, seconds=time.perf_counter() - started)
        return outcome, encode_flac(samples)


_worker: ItemBuilder | None = None
_worker_setup_error: str | None = None


def _init_worker(options: BuildOptions) -> None:
    # an exception here would make the pool respawn workers forever: keep it for the first item
    global _worker, _worker_setup_error
    logging.basicConfig(level=logging.WARNING)
    try:
        _worker = ItemBuilder(options)
    except Exception as err:
        _worker_setup_error = f"{type(err).__name__}: {err}"


def _build_in_worker(record: KnownRecord) -> tuple[ItemOutcome, bytes | None]:
    if _worker is None:  # a set-up failure is the build's, not the item's: abort, cache nothing
        raise RuntimeError(f"a build worker could not load its models: {_worker_setup_error}")
    return _worker.build(record)


def _outcomes(pending: Sequence[KnownRecord], options: BuildOptions) -> Iterator[tuple[ItemOutcome, bytes | None]]:
    if not pending:
        return
    if options.workers == 1 or len(pending) == 1:
        builder = ItemBuilder(options)
        yield from (builder.build(record) for record in pending)
        return
    # spawn, not fork: onnxruntime and CTranslate2 thread pools do not survive a fork
    context = multiprocessing.get_context("spawn")
    with context.Pool(options.workers, initializer=_init_worker, initargs=(options,)) as pool:
        yield from pool.imap_unordered(_build_in_worker, pending, chunksize=4)


def build_items(records: Iterable[KnownRecord], options: BuildOptions, cache: ItemCache) -> BuildSummary:
    """Build every record not yet in `cache` (failed ones again if `retry_failed`), then summarise."""
    started = time.perf_counter()
    records = list(records)
    outcomes = {record.known_id: cache.get(record.known_id) for record in records}
    pending = [
        record
        for record in records
        if outcomes[record.known_id] is None or (outcomes[record.known_id].status == "failed" and options.retry_failed)
    ]
    summary = BuildSummary(options.config_name, items=len(records), reused=len(records) - len(pending))
    progress = tqdm(total=len(pending), desc=f"building {options.config_name}", unit="item")
    for outcome, audio in _outcomes(pending, options):
        cache.put(outcome, audio)
        outcomes[outcome.known_id] = outcome
        summary.built += 1
        progress.update(1)
    progress.close()
    wers, recognised = [], []
    qc: dict[str, list[dict]] = {}
    for record in records:
        outcome = outcomes[record.known_id]
        if outcome is None or outcome.status != "ok":
            summary.failed += 1
            summary.failures.append(
                {"known_id": record.known_id, "stage": outcome.stage if outcome else None,
                 "reason": outcome.reason if outcome else "not built"}
            )
            continue
        summary.total_audio_s += outcome.row["duration_s"]
        wers.append(outcome.row["asr"]["wer"])
        recognised.append(outcome.row["asr"]["subject_recognised"])
        for estimate in outcome.row.get("estimated_alignments") or []:
            qc.setdefault(estimate["method"], []).append(estimate)
    if wers:
        summary.mean_wer = float(np.mean(wers))
        summary.subject_recognition_rate = float(np.mean(recognised))
    for method, estimates in qc.items():
        errors = np.array([e["mean_boundary_error_ms"] for e in estimates])
        summary.alignment_qc[method] = {
            "items": len(estimates),
            "median_boundary_error_ms": float(np.median(errors)),
            "p95_boundary_error_ms": float(np.percentile(errors, 95)),
            "median_subject_iou": float(np.median([e["subject_iou"] for e in estimates])),
            "flagged": int(sum(e["flagged"] for e in estimates)),
        }
    summary.seconds = time.perf_counter() - started
    return summary
