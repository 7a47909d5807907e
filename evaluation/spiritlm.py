"""`spiritlm`: Meta's Spirit LM (base / expressive), from a checkpoint folder laid out as its release.

    <root>/spiritlm_model/spirit-lm-base-7b/        Llama weights, tokenizer.model (+ config), vocabulary with
                                                    [Text] [Speech] [Hu0].. (expressive: [Pi..] [St..] too)
    <root>/speech_tokenizer/hubert_25hz/            mhubert_base_25hz.pt + L11_quantizer_500.pt (the release),
                                                    or a transformers HubertModel folder with its quantizer

Inputs are what Meta's code builds (facebookresearch/spiritlm, spiritlm/model/spiritlm_model.py): the prompt
string of `_build_prompt` (l. 182-216) for one text or one speech input and text output, "[Text]" + prompt
or "[Speech]" + "[Hu..]"... + "[Text]", tokenized whole by `LlamaTokenizer.from_pretrained(path,
add_bos_token=True, add_eos_token=False)` (l. 168-172), here its transformers-4 semantics
(`SentencePieceLlamaTokenizer`). Text is generated with [Text], [Speech] and every speech token banned
(`_build_forbidden_tokens`, l. 218-244, and spiritlm/model/utils.py:102-126). `spiritlm-base-7b` and
`spiritlm-expressive-7b` resolve under $SPIRITLM_CHECKPOINTS_DIR, as in the spiritlm package.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from known_speech.tracing.prompts import encode
from known_speech.units import (
    MHUBERT_LAYER,
    SPEECH_MARKER,
    TEXT_MARKER,
    MHUBERT_RATE_HZ,
    SPIRITLM_PITCH_RATE_HZ,
    SPIRITLM_STYLE_RATE_HZ,
    SpeechToken,
    UnitProvenance,
    interleave_expressive,
)

from .adapter import Adapter, register_adapter
from .model_input import Modality, ModelInput
from .prompt_input import encoded_input, text_model_input
from .speech_links import subject_frames, text_tokens_of_times

__all__ = ["SpiritLMAdapter", "SpiritLMCheckpoint", "TEXT_MARKER", "SPEECH_MARKER", "speech_prompt",
           "speech_model_input", "load_spiritlm_tokenizer", "record_units", "speech_token_ids"]

logger = logging.getLogger(__name__)

_VARIANTS = {"spiritlm-base-7b": "spirit-lm-base-7b", "spiritlm-expressive-7b": "spirit-lm-expressive-7b"}
_SPEECH_TOKEN = re.compile(r"\[(Hu|Pi|St)\d+\]")
# seconds each stream's frame lasts, for linking positions to words
_FRAME_SECONDS = {"Hu": 1 / MHUBERT_RATE_HZ, "Pi": 1 / SPIRITLM_PITCH_RATE_HZ, "St": 1 / SPIRITLM_STYLE_RATE_HZ}


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


def load_spiritlm_tokenizer(lm_dir: str | Path):
    """Meta's tokenizer call: the release's SentencePiece model with transformers-4 slow semantics; a
    folder without tokenizer.model (not a release layout) gets its `transformers` tokenizer."""
    lm_dir = Path(lm_dir)
    if (lm_dir / "tokenizer.model").exists():
        from .sentencepiece_llama import SentencePieceLlamaTokenizer

        return SentencePieceLlamaTokenizer(lm_dir, add_bos_token=True, add_eos_token=False)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(lm_dir))


def speech_prompt(tokens: list[SpeechToken]) -> str:
    """`_build_prompt` for one speech input and text output: "[Speech]" + the speech tokens + "[Text]"."""
    return SPEECH_MARKER + "".join(token.text for token in tokens) + TEXT_MARKER


@register_adapter
class SpiritLMAdapter(Adapter):
    name = "spiritlm"
    modalities: tuple[Modality, ...] = ("text", "speech")

    @classmethod
    def handles(cls, model: str) -> bool:
        lowered = model.lower()
        return "spiritlm" in lowered or "spirit-lm" in lowered or (Path(model) / "spiritlm_model").is_dir()

    def __init__(self, model_name: str, device: str = "cpu", dtype: str = "auto"):
        super().__init__(model_name, device, dtype)
        from transformers import LlamaForCausalLM

        self.checkpoint = SpiritLMCheckpoint.resolve(model_name)
        self.tokenizer = load_spiritlm_tokenizer(self.checkpoint.lm_dir)
        for marker in (TEXT_MARKER, SPEECH_MARKER, "[Hu0]"):
            self._token_id(marker)
        self.expressive = self._has_token("[Pi0]")
        self.model = LlamaForCausalLM.from_pretrained(str(self.checkpoint.lm_dir), dtype=self.dtype).to(device).eval()
        self._speech_tokenizer = None

    def _has_token(self, token: str) -> bool:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        return token_id is not None and token_id != self.tokenizer.unk_token_id

    def _token_id(self, token: str) -> int:
        if not self._has_token(token):
            raise ValueError(f"{self.checkpoint.lm_dir}: the tokenizer has no {token} token; is this a Spirit LM checkpoint?")
        return int(self.tokenizer.convert_tokens_to_ids(token))

    def banned_token_ids(self, modality: Modality) -> list[int]:
        """Text output bans [Text], [Speech] and every [Hu..] (+ [Pi..], [St..] in the expressive model)."""
        return speech_token_ids(self.tokenizer)

    @property
    def speech_tokenizer(self):
        if self._speech_tokenizer is None:
            from known_speech.unit_tokenizer import load_unit_tokenizer

            folder = self.checkpoint.speech_tokenizer_dir
            if folder is None:
                raise ValueError(f"no speech_tokenizer/hubert_25hz folder beside {self.checkpoint.lm_dir}: "
                                 f"Spirit LM's units cannot be made or checked")
            self._speech_tokenizer = load_unit_tokenizer(folder, MHUBERT_LAYER, self.device)
        return self._speech_tokenizer

    def units(self, record: dict) -> tuple[np.ndarray, UnitProvenance, str]:
        """25 Hz HuBERT units of the record: the dataset's own when the same tokenizer made them, else the
        speech tokenizer's. Units of another tokenizer are refused, not used."""
        return record_units(record, self.speech_tokenizer, self.speech_tokenizer_folder)

    @property
    def speech_tokenizer_folder(self) -> str:
        """Where the units come from: the folder a rebuild with other units is told to use."""
        return str(self.checkpoint.speech_tokenizer_dir)

    @property
    def unit_rate_hz(self) -> float:
        return MHUBERT_RATE_HZ

    def speech_tokens(self, record: dict, units: np.ndarray) -> list[SpeechToken]:
        """The interleaved speech tokens Meta's tokenizer writes: HuBERT only for the base model; with
        pitch and style from the release's own tokenizers for the expressive one."""
        if not self.expressive:
            return interleave_expressive(units)
        try:
            import torch
            from spiritlm.speech_tokenizer import spiritlm_expressive
        except ImportError as err:
            raise ValueError(
                f"{self.checkpoint.lm_dir} is the expressive model: its prompts interleave [Pi..] and [St..] tokens "
                f"from the release's pitch (vqvae_f0_quantizer) and style (style_encoder_w2v2) tokenizers, which "
                f"need the spiritlm package (github.com/facebookresearch/spiritlm) and its checkpoints; a prompt "
                f"of [Hu..] alone would be the base model's format") from err
        from known_speech.audio import waveform_of

        encoded = spiritlm_expressive().encode_units(torch.from_numpy(waveform_of(record["audio"])))
        return interleave_expressive(units, [int(u) for u in encoded["pitch"].split()],
                                     [int(u) for u in encoded["style"].split()])

    def prepare(self, record: dict, modality: Modality) -> ModelInput:
        self.check_modality(modality)
        text = text_model_input(self.tokenizer, record, prefix=TEXT_MARKER)
        if modality == "text":
            return text
        units, provenance, source = self.units(record)
        missing = [u for u in np.unique(units) if not self._has_token(f"[Hu{u}]")]
        if units.size == 0 or missing:
            raise ValueError(f"known_id={record['known_id']}: field 'units': {units.size} units, "
                             f"{len(missing)} without a [Hu..] token (e.g. {missing[:3]})")
        model_input = speech_model_input(self.tokenizer, record, text, units, self.speech_tokens(record, units),
                                         self.unit_rate_hz)
        model_input.metadata.update(units_source=source, units=provenance.to_dict())
        return model_input


def speech_token_ids(tokenizer) -> list[int]:
    """The ids Meta's text generation forbids: [Text], [Speech] and every speech token (spiritlm/model/utils.py:
    get_forbidden_tokens)."""
    vocabulary = range(len(tokenizer))
    pieces = tokenizer.convert_ids_to_tokens(list(vocabulary))
    return [i for i, piece in zip(vocabulary, pieces)
            if piece in (TEXT_MARKER, SPEECH_MARKER) or _SPEECH_TOKEN.fullmatch(piece or "")]


def record_units(record: dict, speech_tokenizer, rebuild_with: str) -> tuple[np.ndarray, UnitProvenance, str]:
    """The units a model reads for a record: those stored in the row at the tokenizer's rate when the same
    tokenizer made them ("dataset"), else the tokenizer's own from the row's audio ("speech_tokenizer").
    Stored units of another tokenizer are refused, naming the tokenizer to rebuild with."""
    known = speech_tokenizer.provenance
    for span in record.get("speech_token_spans") or []:
        if not span.get("units") or abs(span["rate_hz"] - known.rate_hz) > 1e-6:
            continue
        if not span.get("units_checkpoint_sha256"):
            raise ValueError(f"known_id={record['known_id']}: field 'speech_token_spans.units': stored units "
                             f"record no tokenizer; rebuild with --unit-tokenizer {rebuild_with}")
        stored = UnitProvenance(span["units_tokenizer"], span["units_checkpoint_sha256"], span["units_quantizer"],
                                known.layer, known.rate_hz)
        if not stored.same_units_as(known):
            raise ValueError(
                f"known_id={record['known_id']}: field 'speech_token_spans.units': made by {stored.tokenizer} "
                f"({stored.quantizer}, sha256 {stored.checkpoint_sha256[:12]}), but this model reads units of "
                f"{known.tokenizer} ({known.quantizer}, sha256 {known.checkpoint_sha256[:12]}); rebuild with "
                f"--unit-tokenizer {rebuild_with}")
        return np.asarray(span["units"], dtype=np.int64), known, "dataset"
    if hasattr(speech_tokenizer, "encode_record"):  # oracle phone units: from the row's phoneme times, not its audio
        return speech_tokenizer.encode_record(record), known, "speech_tokenizer"
    from known_speech.audio import waveform_of  # audio libraries only where audio is decoded

    return speech_tokenizer.encode(waveform_of(record["audio"])), known, "speech_tokenizer"


def _token_positions(encoding, tokens: list[SpeechToken], prompt_text: str, known_id: int) -> list[int]:
    """The position of each speech token: the one id whose characters are exactly that token's."""
    by_span = {span: position for position, span in enumerate(encoding.char_spans) if span is not None}
    positions, cursor = [], len(SPEECH_MARKER)
    for token in tokens:
        span = (cursor, cursor + len(token.text))
        if span not in by_span:
            raise ValueError(f"known_id={known_id}: the tokenizer does not keep {token.text} as one token in "
                             f"{prompt_text[:60]!r}...; the speech vocabulary is not this model's")
        positions.append(by_span[span])
        cursor = span[1]
    return positions


def speech_model_input(tokenizer, record: dict, text: ModelInput, units: np.ndarray,
                       tokens: list[SpeechToken], unit_rate_hz: float = MHUBERT_RATE_HZ) -> ModelInput:
    """The S→T input of Meta's code for these speech tokens: `speech_prompt` tokenized whole; each speech
    position linked through its time to the text token it voices (`text`: the T→T input of the record),
    the subject's positions those whose unit frames (at `unit_rate_hz`) overlap the subject's time span."""
    known_id = int(record["known_id"])
    prompt_text = speech_prompt(tokens)
    encoding = encode(tokenizer, prompt_text)
    positions = _token_positions(encoding, tokens, prompt_text, known_id)
    if encoding.pieces[-1] != TEXT_MARKER:
        raise ValueError(f"known_id={known_id}: the speech prompt ends in {encoding.pieces[-1]!r}, not {TEXT_MARKER}")
    hubert_starts = np.array([token.frame for token in tokens if token.stream == "Hu"])
    run_end = dict(zip(hubert_starts.tolist(), np.append(hubert_starts[1:], units.size).tolist()))
    frame_seconds = {**_FRAME_SECONDS, "Hu": 1.0 / unit_rate_hz}
    midpoints = [(token.frame + (run_end[token.frame] if token.stream == "Hu" else token.frame + 1)) / 2.0
                 * frame_seconds[token.stream] for token in tokens]
    links: list[int | None] = [None] * len(encoding)
    for position, link in zip(positions, text_tokens_of_times(midpoints, record["words"], text.text_char_spans)):
        links[position] = link
    links[-1] = len(text.text_tokens) - 1  # the closing [Text] asks for the answer: the last token's role
    frame_start, frame_end = subject_frames(record, unit_rate_hz)
    subject = [position for position, token in zip(positions, tokens) if token.stream == "Hu"
               and token.frame < min(frame_end, units.size) and run_end[token.frame] > frame_start]
    if not subject:
        raise ValueError(f"known_id={known_id}: field 'subject_time_span' lies outside the {units.size} frames")
    return encoded_input(tokenizer, record, encoding, "speech", subject, links, text.text_tokens, text.subject_text_range,
                         text.text_char_spans, {"num_frames": int(units.size), "num_speech_tokens": len(tokens)})
