"""The record schema and the dataclasses on the row path say the same thing: a field added to one and not
the other fails here, not in a user's `load_dataset`."""

from __future__ import annotations

from dataclasses import fields

from known_speech.builders.align.qc import AlignmentQC
from known_speech.builders.align.result import Alignment, EstimatedAlignment
from known_speech.builders.asr import AsrCheck
from known_speech.builders.item import SpokenRow
from known_speech.builders.tts.base import VoiceInfo
from known_speech.evaluation.filtering import FilterRow
from known_speech.audio import Normalisation
from known_speech.schema import KNOWN_COLUMNS, filter_features, record_features, speech_view_features
from known_speech.source import KnownRecord
from known_speech.spans import AlignedWord, TokenSpan


def _names(dataclass, drop=()) -> set[str]:
    return {f.name for f in fields(dataclass)} - set(drop)


def _struct(feature) -> set[str]:
    """Field names of a struct feature or of a list of structs."""
    inner = getattr(feature, "feature", feature)
    return set(inner)


def test_record_features_are_the_spoken_row_and_its_parts():
    features = record_features()
    assert set(features) == _names(SpokenRow, drop=("record",)) | _names(KnownRecord) | {"audio"}
    assert _struct(features["normalisation"]) == _names(Normalisation)
    assert _struct(features["voice"]) == _names(VoiceInfo)
    assert _struct(features["words"]) == _names(AlignedWord)
    assert _struct(features["phonemes"]) == {"phoneme", "start_s", "end_s"}
    assert _struct(features["speech_token_spans"]) == _names(TokenSpan)
    assert _struct(features["alignment"]) == _names(Alignment)
    assert _struct(features["estimated_alignments"]) == _names(EstimatedAlignment, drop=("qc",)) | _names(AlignmentQC)
    assert _struct(features["estimated_alignments"]["words"] if isinstance(features["estimated_alignments"], dict)
                   else features["estimated_alignments"].feature["words"]) == _names(AlignedWord)
    assert _struct(features["asr"]) == _names(AsrCheck, drop=("words",))


def test_filter_and_view_features_are_the_filter_row_with_its_record():
    assert set(filter_features()) == _names(FilterRow) | set(KNOWN_COLUMNS)
    assert set(KNOWN_COLUMNS) == _names(KnownRecord, drop=("known_id",))
    assert set(speech_view_features()) == set(record_features()) | _names(FilterRow, drop=("known_id",))
