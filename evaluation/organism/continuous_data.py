"""The continuous organism's training bundle: what a GPU host without a registry needs to train `whisper-smollm2`.

    utterances.jsonl     one line per corpus utterance: its id, split, kind and the words spoken (as written)
    audio.npz            every utterance's 16 kHz audio as Ogg Opus (libsndfile's default rate, about 3.7 kB a second,
                         a fifth of FLAC's; mean squared error 0.7 % of the signal's), concatenated, with offsets
    encoder.safetensors  Whisper tiny.en's encoder (float16, as stored) in transformers' Whisper layout
    tekken.json          the backbone's BPE as Voxtral's tokenizer file (continuous.write_tekken)
    bundle.json          counts, and the sha256 of the CTranslate2 model.bin, the GGUF and tekken.json it was made from

Opus keeps the bundle within what one call to the host carries (64 MiB with the code); the encoder features are
computed there, on the GPU, from the decoded audio. The audio a trained model is tested on is the dataset's FLAC.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from known_speech.atomic import atomic_path, atomic_write_text
from known_speech.source import file_sha256

__all__ = ["BUNDLE_VERSION", "ContinuousBundle", "write_bundle", "read_bundle", "opus_bytes", "decode_opus"]

BUNDLE_VERSION = 1


def opus_bytes(samples: np.ndarray, sample_rate: int = 16_000) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(samples, dtype=np.float32), sample_rate, format="OGG", subtype="OPUS")
    return buffer.getvalue()


def decode_opus(data: bytes) -> np.ndarray:
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    if rate != 16_000:
        raise ValueError(f"an Opus utterance at {rate} Hz; the bundle holds 16 kHz audio")
    return samples


@dataclass
class ContinuousBundle:
    folder: Path
    utterances: list[dict]
    audio: np.ndarray  # uint8, every utterance's Opus bytes one after another
    offsets: np.ndarray  # int64 (utterances + 1,)
    record: dict

    def waveform(self, index: int) -> np.ndarray:
        return decode_opus(self.audio[self.offsets[index]:self.offsets[index + 1]].tobytes())

    def split(self, name: str) -> list[int]:
        return [i for i, u in enumerate(self.utterances) if u["split"] == name]


def write_bundle(rows: Iterable[dict], out: str | Path, tokenizer, whisper_model_bin: Path, gguf: Path) -> dict:
    """The bundle from corpus rows (`utterance_id`, `split`, `kind`, `text`, and `waveform`: 16 kHz float samples),
    the backbone's tokenizer, Whisper's CTranslate2 file and the backbone's GGUF; returns bundle.json's record."""
    from safetensors.torch import save_file

    from known_speech.ctranslate2_weights import encoder_dimensions, read_ctranslate2, whisper_encoder_state_dict

    from .continuous import write_tekken

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    utterances, chunks, seconds = [], [], 0.0
    for row in rows:
        chunks.append(np.frombuffer(opus_bytes(row["waveform"]), dtype=np.uint8))
        seconds += len(row["waveform"]) / 16_000
        utterances.append({key: row[key] for key in ("utterance_id", "split", "kind", "text")})
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
    with atomic_path(out / "audio.npz") as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, audio=np.concatenate(chunks) if chunks else np.zeros(0, np.uint8), offsets=offsets)
    atomic_write_text(out / "utterances.jsonl", "".join(json.dumps(u, ensure_ascii=False) + "\n" for u in utterances))
    _, variables = read_ctranslate2(whisper_model_bin)
    dims = encoder_dimensions(variables)
    with atomic_path(out / "encoder.safetensors") as temporary:
        save_file({k: v.half() for k, v in whisper_encoder_state_dict(variables).items()}, str(temporary),
                  metadata={"source": whisper_model_bin.name})
    write_tekken(tokenizer, out / "tekken.json", dims["num_mel_bins"])
    record = {"version": BUNDLE_VERSION, "utterances": len(utterances), "audio_hours": round(seconds / 3600, 3),
              "splits": {s: sum(u["split"] == s for u in utterances) for s in ("train", "test")},
              "encoder": dims, "whisper_model_bin_sha256": file_sha256(whisper_model_bin),
              "gguf_file": gguf.name, "gguf_sha256": file_sha256(gguf), "tekken_sha256": file_sha256(out / "tekken.json"),
              "audio_codec": "ogg/opus, libsndfile's default bitrate"}
    atomic_write_text(out / "bundle.json", json.dumps(record, indent=1))
    return record


def read_bundle(folder: str | Path) -> ContinuousBundle:
    folder = Path(folder)
    record = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    if record.get("version") != BUNDLE_VERSION:
        raise ValueError(f"{folder}: bundle version {record.get('version')}, this trainer reads {BUNDLE_VERSION}")
    if file_sha256(folder / "tekken.json") != record["tekken_sha256"]:
        raise ValueError(f"{folder}/tekken.json: not the file the bundle was made with")
    utterances = [json.loads(line) for line in (folder / "utterances.jsonl").read_text(encoding="utf-8").splitlines()]
    with np.load(folder / "audio.npz") as data:
        audio, offsets = data["audio"], data["offsets"]
    return ContinuousBundle(folder, utterances, audio, offsets, record)
