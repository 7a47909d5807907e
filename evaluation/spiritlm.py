"""`spiritlm`: Meta's Spirit LM (base / expressive), from a checkpoint folder laid out as its release.

    <root>/spiritlm_model/spirit-lm-base-7b/        Llama weights + tokenizer with [Text] [Speech] [Hu0]..[Hu499]
    <root>/speech_tokenizer/hubert_25hz/            mhubert_base_25hz.pt + L11_quantizer_500.pt (the release),
                                                    or a transformers HubertModel folder + centroids (.pt/.npy)

Text prompts are `[Text]<prompt>`; speech prompts `[Speech][Hu..]..[Text]` with de-duplicated 25 Hz units,
taken from the dataset's units when the row has them, else from the speech tokenizer. `spiritlm-base-7b`
and `spiritlm-expressive-7b` resolve under $SPIRITLM_CHECKPOINTS_DIR, as in the spiritlm package.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from known_speech.builders.units import (
    MHUBERT_LAYER,
    MHUBERT_RATE_HZ,
    HubertUnitTokenizer,
    dedup_span,
    deduplicate,
    find_centroids,
)

from .adapter import (
    Adapter,
    Modality,
    ModelInput,
    register_adapter,
    subject_frames,
    subject_text_range,
    text_token_spans,
    text_tokens_of_frames,
)
from .hf_text import text_model_input

__all__ = ["SpiritLMAdapter", "SpiritLMCheckpoint", "TEXT_MARKER", "SPEECH_MARKER"]

logger = logging.getLogger(__name__)

TEXT_MARKER, SPEECH_MARKER = "[Text]", "[Speech]"
_VARIANTS = {"spiritlm-base-7b": "spirit-lm-base-7b", "spiritlm-expressive-7b": "spirit-lm-expressive-7b"}


@dataclass(frozen=True)
class SpiritLMCheckpoint:
    lm_dir: Path
    speech_tokenizer_dir: Path | None

    @classmethod
    def resolve(cls, name_or_path: str) -> "SpiritLMCheckpoint":
        name = name_or_path.removeprefix("spiritlm:")
        if name in _VARIANTS or name in _VARIANTS.values():
            root = os.environ.get("SPIRITLM_CHECKPOINTS_DIR")
            if not root:
                raise ValueError(f"model {name!r}: set SPIRITLM_CHECKPOINTS_DIR to the spiritlm release's checkpoints folder")
            lm_dir = Path(root) / "spiritlm_model" / _VARIANTS.get(name, name)
        else:
            path = Path(name)
            if (path / "config.json").exists():
                lm_dir = path
            elif (path / "spiritlm_model").is_dir():
                candidates = sorted((path / "spiritlm_model").iterdir(), key=lambda p: "base" not in p.name)
                if not candidates:
                    raise ValueError(f"{path}/spiritlm_model holds no model folder")
                lm_dir = candidates[0]
            else:
                raise ValueError(f"model {name_or_path!r}: neither a spiritlm checkpoints folder nor a model folder")
        if not (lm_dir / "config.json").exists():
            raise ValueError(f"{lm_dir}: no config.json (expected the Spirit LM Llama weights here)")
        speech = next((root / "speech_tokenizer" / "hubert_25hz" for root in (lm_dir, lm_dir.parent, lm_dir.parent.parent)
                       if (root / "speech_tokenizer" / "hubert_25hz").is_dir()), None)
        return cls(lm_dir, speech)


class _ReleaseSpeechTokenizer:
    """The spiritlm package's own tokenizer (fairseq mHuBERT + linear quantizer), when it is installed."""

    def __init__(self, folder: Path):
        from spiritlm.speech_tokenizer.hubert import HubertTokenizer  # the release's own code

        self.tokenizer = HubertTokenizer(hubert_ckpt=folder / "mhubert_base_25hz.pt", hubert_layer=MHUBERT_LAYER,
                                         quantizer_ckpt=folder / "L11_quantizer_500.pt", is_linear_quantizer=True)

    def encode(self, waveform: np.ndarray) -> np.ndarray:
        units = self.tokenizer(torch.from_numpy(waveform))
        return units.cpu().numpy().astype(np.int64).reshape(-1)


@register_adapter
class SpiritLMAdapter(Adapter):
    name = "spiritlm"
    modalities: tuple[Modality, ...] = ("text", "speech")

    def __init__(self, model_name: str, device: str = "cpu", dtype: str = "float32"):
        super().__init__(model_name, device, dtype)
        from transformers import AutoTokenizer, LlamaForCausalLM

        self.checkpoint = SpiritLMCheckpoint.resolve(model_name)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.checkpoint.lm_dir))
        self.model = LlamaForCausalLM.from_pretrained(str(self.checkpoint.lm_dir), dtype=self.dtype).to(device).eval()
        self.text_marker_id = self._special_id(TEXT_MARKER)
        self.speech_marker_id = self._special_id(SPEECH_MARKER)
        self.unit_ids = np.array([self._special_id(f"[Hu{u}]") for u in range(500)])
        self._speech_tokenizer = None

    def _special_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"{self.checkpoint.lm_dir}: the tokenizer has no {token} token; is this a Spirit LM checkpoint?")
        return int(token_id)

    @property
    def speech_tokenizer(self):
        if self._speech_tokenizer is None:
            folder = self.checkpoint.speech_tokenizer_dir
            if folder is None:
                raise ValueError(f"no speech_tokenizer/hubert_25hz folder beside {self.checkpoint.lm_dir}, and the row has no units")
            if (folder / "config.json").exists():
                self._speech_tokenizer = HubertUnitTokenizer.from_pretrained(
                    folder, find_centroids(folder), device=self.device)
            else:
                self._speech_tokenizer = _ReleaseSpeechTokenizer(folder)
        return self._speech_tokenizer

    def units(self, record: dict) -> tuple[np.ndarray, str]:
        """25 Hz frame units of the record: the dataset's own where present, else the speech tokenizer's."""
        for span in record.get("speech_token_spans") or []:
            if span.get("units") and abs(span["rate_hz"] - MHUBERT_RATE_HZ) < 1e-6:
                return np.asarray(span["units"], dtype=np.int64), f"dataset:{span['tokenizer']}"
        from known_speech.audio import waveform_of  # audio libraries only where audio is decoded

        return self.speech_tokenizer.encode(waveform_of(record["audio"])), "speech_tokenizer"

    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        self.check_modality(modality)
        if modality == "text":
            return text_model_input(self.tokenizer, record, [self.text_marker_id], [TEXT_MARKER])
        known_id = int(record["known_id"])
        units, source = self.units(record)
        if units.size == 0 or units.max() >= len(self.unit_ids):
            raise ValueError(f"known_id={known_id}: field 'units': need 25 Hz units in 0..{len(self.unit_ids) - 1}")
        dedup_units, run_starts = deduplicate(units)
        frame_start, frame_end = subject_frames(record, MHUBERT_RATE_HZ)
        subject_start, subject_end = dedup_span(run_starts, frame_start, min(frame_end, len(units)), len(units))
        ids, char_spans = text_token_spans(self.tokenizer, record["prompt"])
        links = text_tokens_of_frames(run_starts, len(units), MHUBERT_RATE_HZ, record["words"], char_spans)
        return ModelInput(
            known_id=known_id,
            modality="speech",
            subject_range=(subject_start + 1, subject_end + 1),
            text_tokens=[self.tokenizer.decode([i]) for i in ids],
            subject_text_range=subject_text_range(record, char_spans),
            text_token_of_position=[None, *links, len(ids) - 1],  # [Speech] units.. [Text]: the marker asks for the answer
            labels=[SPEECH_MARKER, *(f"[Hu{u}]" for u in dedup_units), TEXT_MARKER],
            input_ids=[self.speech_marker_id, *self.unit_ids[dedup_units].tolist(), self.text_marker_id],
            metadata={"units_source": source, "num_frames": int(len(units)), "num_dedup_units": int(len(dedup_units))},
        )
