"""The record schema of a known-speech row, as `datasets.Features`.

Fields a later stage fills (estimated alignments and their QC, speech units) have their place
here from the start; until filled they hold nulls or empty lists.
"""

from __future__ import annotations

from datasets import Audio, Features, List, Value

from .audio import TARGET_SAMPLE_RATE

__all__ = ["record_features", "filter_features", "speech_view_features", "both_view_features", "KNOWN_COLUMNS",
           "FILTER_COLUMNS", "SWAP_COLUMNS", "PROBE_COLUMNS"]


def record_features() -> Features:
    word = {
        "word": Value("string"),
        "char_start": Value("int32"),
        "char_end": Value("int32"),
        "start_s": Value("float64"),
        "end_s": Value("float64"),
        "score": Value("float32"),
    }
    return Features(
        {
            "known_id": Value("int32"),
            "subject": Value("string"),
            "attribute": Value("string"),
            "template": Value("string"),
            "prompt": Value("string"),
            "relation_id": Value("string"),
            "prediction": Value("string"),
            "spoken_text": Value("string"),
            "audio": Audio(sampling_rate=TARGET_SAMPLE_RATE),
            "duration_s": Value("float64"),
            "normalisation": {"method": Value("string"), "target_dbfs": Value("float32"), "gain_db": Value("float32")},
            "voice": {
                "engine": Value("string"),
                "voice": Value("string"),
                "speaker": Value("string"),
                "speed": Value("float32"),
                "engine_version": Value("string"),
                "seed": Value("int64"),
            },
            "words": List(word),
            # every phoneme the synthesiser voiced, pauses as "_" (Piper's own durations; empty for other engines):
            # the exact phone labels of each frame, what oracle phone units (known_speech.phone_units) are read from
            "phonemes": List({"phoneme": Value("string"), "start_s": Value("float64"), "end_s": Value("float64")}),
            "subject_char_span": List(Value("int32"), length=2),
            "subject_time_span": List(Value("float64"), length=2),
            "speech_token_spans": List(
                {
                    "tokenizer": Value("string"),
                    "rate_hz": Value("float32"),
                    "frame_start": Value("int32"),
                    "frame_end": Value("int32"),
                    "units": List(Value("int32")),
                    "dedup_start": Value("int32"),
                    "dedup_end": Value("int32"),
                    "units_tokenizer": Value("string"),
                    "units_checkpoint_sha256": Value("string"),
                    "units_quantizer": Value("string"),
                }
            ),
            "alignment": {
                "method": Value("string"),
                "model": Value("string"),
                "mean_score": Value("float32"),
                "error_ms_vs_tts": Value("float32"),
            },
            "estimated_alignments": List(
                {
                    "method": Value("string"),
                    "model": Value("string"),
                    "words": List(word),
                    "mean_boundary_error_ms": Value("float32"),
                    "max_boundary_error_ms": Value("float32"),
                    "subject_iou": Value("float32"),
                    "flagged": Value("bool"),
                }
            ),
            "asr": {
                "model": Value("string"),
                "transcript": Value("string"),
                "wer": Value("float32"),
                "subject_recognised": Value("bool"),
            },
        }
    )


FILTER_COLUMNS = ("model", "adapter", "modality", "voice_config", "generation", "answer", "match", "error")
# `filter --subject-swap` (evaluation.subject_swap): for a fact recalled from speech, the generation with another
# prompt's subject units in the subject's place, and its match against this fact's attribute ("" where not run)
SWAP_COLUMNS = {"swapped_with": Value("int32"), "swapped_generation": Value("string"), "swapped_match": Value("string")}
# the probes of a recalled fact (evaluation.subject_dependence): made-up names in the subject's place, and other
# Known subjects of the relation; the two flags are null where the fact was not probed (not recalled)
PROBE_COLUMNS = {
    "probe_seed": Value("int32"),
    "blind_probe_ids": List(Value("int64")),
    "blind_generations": List(Value("string")),
    "blind_matches": List(Value("string")),
    "counterfactual_known_ids": List(Value("int32")),
    "counterfactual_probe_ids": List(Value("int64")),
    "counterfactual_generations": List(Value("string")),
    "counterfactual_matches": List(Value("string")),
    "subject_dependent": Value("bool"),
    "follows_subject": Value("bool"),
}
KNOWN_COLUMNS = ("subject", "attribute", "template", "prompt", "relation_id", "prediction")


def filter_features() -> Features:
    """A model's recall filter row (evaluation.filtering.FilterRow; match is exact / partial / none), with the
    Known record it was asked about."""
    return Features({"known_id": Value("int32"), **{name: Value("string") for name in KNOWN_COLUMNS + FILTER_COLUMNS},
                     **SWAP_COLUMNS, **PROBE_COLUMNS})


def speech_view_features() -> Features:
    """A speech view row: the voice config's row (audio, words, spans) and the model's answer to it."""
    return Features({**record_features(), **{name: Value("string") for name in FILTER_COLUMNS}, **SWAP_COLUMNS,
                     **PROBE_COLUMNS})


def both_view_features() -> Features:
    """A fact recalled from text and from speech: the voice config's row and both answers."""
    answers = {f"{modality}_{name}": Value("string") for modality in ("text", "speech")
               for name in ("generation", "answer", "match")}
    answers |= {f"{modality}_{flag}": Value("bool") for modality in ("text", "speech")
                for flag in ("subject_dependent", "follows_subject")}
    return Features({**record_features(), **{name: Value("string") for name in ("model", "adapter", "voice_config")},
                     **answers})
