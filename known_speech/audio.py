"""Audio I/O: everything is stored as 16 kHz mono FLAC, the rate speech tokenizers expect."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["TARGET_SAMPLE_RATE", "PEAK_DBFS", "Normalisation", "to_mono_16k", "normalise_peak", "encode_flac",
           "decode_audio", "waveform_of"]

TARGET_SAMPLE_RATE = 16_000
PEAK_DBFS = -1.0  # every engine's audio is scaled to this peak: headroom for FLAC's 16 bits, one level for all


@dataclass(frozen=True)
class Normalisation:
    """How an item's audio was levelled: the method, its target and the gain applied (dB)."""

    method: str
    target_dbfs: float
    gain_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def normalise_peak(samples: np.ndarray, target_dbfs: float = PEAK_DBFS) -> tuple[np.ndarray, Normalisation]:
    """Scale so that the largest sample sits at `target_dbfs` (engines differ: Piper peaks at full scale,
    espeak-ng quieter); silent audio is returned as it is, with 0 dB."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak == 0.0:
        return samples, Normalisation("peak", target_dbfs, 0.0)
    gain = 10 ** (target_dbfs / 20) / peak
    return (samples * gain).astype(np.float32), Normalisation("peak", target_dbfs, float(20 * np.log10(gain)))


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Down-mix to mono and resample (soxr, high quality) to 16 kHz float32 in [-1, 1]."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if sample_rate != TARGET_SAMPLE_RATE:
        import soxr  # here, not at import: readers of decoded arrays (a GPU host) need neither library

        samples = soxr.resample(samples, sample_rate, TARGET_SAMPLE_RATE, quality="HQ")
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


def encode_flac(samples: np.ndarray, sample_rate: int = TARGET_SAMPLE_RATE) -> bytes:
    """16-bit FLAC bytes; deterministic for the same samples."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile

    samples, sample_rate = soundfile.read(io.BytesIO(data), dtype="float32")
    return samples, sample_rate


def waveform_of(audio) -> np.ndarray:
    """16 kHz mono float32 from a dataset row's `audio`: a torchcodec AudioDecoder (datasets >= 4),
    a decoded {"array", "sampling_rate"} dict, or undecoded {"bytes"}."""
    if hasattr(audio, "get_all_samples"):
        samples = audio.get_all_samples()
        return to_mono_16k(samples.data.numpy().T, samples.sample_rate)
    if isinstance(audio, dict) and audio.get("array") is not None:
        return to_mono_16k(np.asarray(audio["array"]), int(audio["sampling_rate"]))
    if isinstance(audio, dict) and audio.get("bytes"):
        return to_mono_16k(*decode_audio(audio["bytes"]))
    raise ValueError(f"cannot read audio from {type(audio).__name__}")
