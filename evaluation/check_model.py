"""`known-speech check-model`: before trusting a trace, confirm on the real weights that the inputs are the
model's own.

For one Known prompt per modality it shows the exact token strings fed and checks what no error would
reveal: the BOS the model's reference code adds, the answer token (a word piece of the attribute), where
the units came from (or, for audio embeddings, that the audio marker became the positions the processor's
length formula gives, each holding the model's merged features), greedy recall of a few easy facts, and that
restoring every state gives the clean score. With the spiritlm package importable it also compares the prompt string and ids with Meta's own
`_build_prompt` and tokenizer, and the units of the LibriSpeech example Meta's repository ships with the
228 units its speech-tokenizer notebook prints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from known_speech.tracing import CausalTracer, TraceOptions, TracingSelfCheckError
from known_speech.tracing.prompts import is_blank_piece

from .adapter import Adapter
from .model_input import Modality, ModelInput
from .matching import classify_answer, first_answer

__all__ = ["Check", "ModelCheck", "check_model", "EASY_FACTS", "LIBRISPEECH_EXAMPLE_UNITS"]

logger = logging.getLogger(__name__)

Status = Literal["pass", "warn", "fail"]
# Known facts a 7B model recalls: capitals, a maker, a language (known_id)
EASY_FACTS = (21, 81, 123, 324, 390)
# 25 Hz units (not de-duplicated) of examples/audio/7143-88743-0029.flac (LibriSpeech, CC BY 4.0) from Spirit LM's
# release tokenizer, as printed in facebookresearch/spiritlm examples/speech_tokenizer/spiritlm_speech_tokenizer.ipynb
LIBRISPEECH_EXAMPLE = "examples/audio/7143-88743-0029.flac"
LIBRISPEECH_EXAMPLE_UNITS = tuple(int(u) for u in """
99 49 38 149 149 71 423 427 492 288 315 153 153 389 497 412 247 354 7 96 452 452 176 266 266 77 248 336 336 211 166 65
94 224 224 148 492 191 440 440 41 41 457 79 382 451 332 216 114 340 478 74 79 370 272 370 370 53 477 65 171 60 258 111
111 111 111 338 338 23 23 338 23 338 338 338 7 338 338 149 406 7 361 361 361 99 99 99 99 99 99 99 209 209 209 209 209
479 50 50 7 149 149 35 35 130 130 169 169 72 434 119 272 4 249 245 245 433 159 294 139 359 343 269 302 226 370 216 459
424 424 226 382 7 58 138 428 397 350 350 306 306 306 84 11 171 171 60 314 227 227 355 9 58 138 226 370 272 382 334 330
176 176 307 145 248 493 64 44 388 7 111 111 111 111 23 23 481 149 149 80 70 431 457 79 79 249 249 245 245 245 433 433
316 316 180 458 458 458 86 86 225 103 60 96 119 119 129 356 218 4 259 259 392 490 75 488 166 65 171 60 7 54 54 85 85
361 361""".split())


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


@dataclass
class ModelCheck:
    model: str
    adapter: str
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: Status, detail: str) -> None:
        self.checks.append(Check(name, status, detail))
        logger.info("%s %s: %s", status.upper(), name, detail)

    def failures(self, strict: bool = False) -> list[Check]:
        return [check for check in self.checks if check.status == "fail" or (strict and check.status == "warn")]

    def describe(self) -> str:
        width = max(len(check.name) for check in self.checks)
        return "\n".join(f"{check.status.upper():4}  {check.name:<{width}}  {check.detail}" for check in self.checks)


def _expects_bos(adapter: Adapter) -> bool | None:
    """Whether the model's reference code starts inputs with BOS: Spirit LM's always does
    (add_bos_token=True); for others the tokenizer's own default decides, so there is nothing to expect."""
    return True if adapter.name == "spiritlm" else None


def _check_input(report: ModelCheck, adapter: Adapter, model_input: ModelInput, record: dict) -> None:
    modality = model_input.modality
    report.add(f"{modality}: input", "pass",
               f"known_id={model_input.known_id} {model_input.prompt_text[:120]!r} -> "
               f"{len(model_input.pieces or model_input.labels)} positions: {model_input.pieces[:40]}")
    expected = _expects_bos(adapter)
    tokenizer = adapter.tokenizer
    bos_token = getattr(tokenizer, "bos_token", None)
    reference, source, default = None, "", ""
    if model_input.input_ids is not None:
        reference = adapter.reference_input_ids(record, modality)
        source, default = "the model's own chat encoding of the conversation", "as the model's own encoding"
        if reference is None and getattr(tokenizer, "is_fast", False):
            reference = list(tokenizer(model_input.prompt_text)["input_ids"])
            source, default = "the tokenizer's own default encoding of the prompt string", "as the tokenizer's default"
    if expected and not model_input.bos:
        report.add(f"{modality}: BOS", "fail", f"the model's reference code starts with its BOS; this input starts "
                   f"with {model_input.pieces[:1]} (tokenizer BOS: {bos_token!r})")
    elif reference is not None:
        status = "pass" if reference == model_input.input_ids else "fail"
        report.add(f"{modality}: ids", status, f"equal to {source}"
                   if status == "pass" else f"ours {model_input.input_ids[:12]} vs {source}: {reference[:12]}")
        report.add(f"{modality}: BOS", "pass", f"{'starts with ' + repr(bos_token) if model_input.bos else 'none'}, "
                   f"{default}")
    else:
        report.add(f"{modality}: BOS", "pass", f"{'starts with ' + repr(bos_token) if model_input.bos else 'none'}")
    answer = model_input.answer
    decoded = tokenizer.decode([answer.id]).strip()
    banned = set(adapter.banned_token_ids(modality))
    if is_blank_piece(answer.piece) or answer.id in banned or not decoded:
        report.add(f"{modality}: answer token", "fail", f"{answer.piece!r} (id {answer.id}) is no word piece of "
                   f"{record['attribute']!r}")
    else:
        status = "pass" if record["attribute"].strip().startswith(decoded) else "warn"
        skipped = f", after skipping {list(answer.skipped)}" if answer.skipped else ""
        report.add(f"{modality}: answer token", status, f"{answer.piece!r} (id {answer.id}) for "
                   f"{record['attribute']!r}{skipped}")


def _check_units(report: ModelCheck, model_input: ModelInput) -> None:
    units = model_input.metadata.get("units")
    if units is None:
        return
    report.add("speech: units", "pass", f"{model_input.metadata['units_source']}: {units['tokenizer']} "
               f"({units['quantizer']} quantizer, layer {units['layer']}, {units['rate_hz']:.2f} Hz, sha256 "
               f"{units['checkpoint_sha256'][:16]}), {model_input.metadata['num_frames']} frames -> "
               f"{model_input.metadata['num_speech_tokens']} speech tokens")


def _check_audio(report: ModelCheck, adapter: Adapter, model_input: ModelInput) -> None:
    """Speech that enters as embeddings: the audio marker was expanded to the positions the length formula gives,
    and every one of them carries the model's merged audio features, not the marker's own embedding."""
    positions = model_input.metadata.get("audio_positions")
    if positions is None:
        return
    start, end = positions
    marker = adapter.tokenizer.convert_tokens_to_ids(model_input.pieces[start])
    with torch.no_grad():
        own = adapter.decoder.get_input_embeddings()(torch.tensor([marker], device=adapter.device))[0]
    unmerged = int((model_input.inputs_embeds[start:end] == own).all(dim=-1).sum())
    detail = (f"{end - start} positions [{start}, {end}) of {model_input.pieces[start]!r} for "
              f"{model_input.metadata['mel_frames']} mel frames (the processor's length formula); subject at "
              f"{list(model_input.subject_range)}")
    if unmerged:
        report.add("speech: audio", "fail", f"{detail}: {unmerged} still hold the marker's embedding, so the model's "
                   f"audio features were not merged there")
    else:
        report.add("speech: audio", "pass", f"{detail}, each holding the model's merged audio features")


def _check_restoration(report: ModelCheck, adapter: Adapter, model_input: ModelInput, modality: Modality) -> None:
    """The tracer's self-check: its layer-by-layer run equals the model's forward, restoring every state
    gives the clean score and restoring none the corrupted one."""
    tracer = CausalTracer(adapter.decoder, model_name=adapter.model_name)
    kwargs = ({"input_ids": torch.tensor(model_input.input_ids)} if model_input.input_ids is not None
              else {"inputs_embeds": model_input.inputs_embeds})
    options = TraceOptions(kinds=("hidden",), samples=2, token_range=(model_input.length - 1,))
    try:
        result = tracer.trace(subject_range=model_input.subject_range, answer_id=model_input.answer.id,
                              options=options, **kwargs)
    except TracingSelfCheckError as err:
        report.add(f"{modality}: restoration", "fail", str(err))
        return
    report.add(f"{modality}: restoration", "pass", f"restoring every state gives the clean P={result.high_score:.4g}, "
               f"none the corrupted P={result.low_score:.4g} (noise sigma {result.noise_std:.3g})")


def _check_recall(report: ModelCheck, adapter: Adapter, records: list[dict], modality: Modality) -> None:
    recalled, answers = 0, []
    for record in records:
        generation = adapter.generate(adapter.prepare(record, modality), max_new_tokens=8)
        match = classify_answer(generation, record["attribute"])
        recalled += match != "none"
        answers.append(f"{record['prompt']!r} -> {first_answer(generation)!r} (expected {record['attribute']!r}: {match})")
    status = "pass" if recalled * 2 > len(records) else "warn"
    report.add(f"{modality}: recall", status, f"{recalled} of {len(records)} easy facts: " + "; ".join(answers))


def _check_against_spiritlm(report: ModelCheck, adapter: Adapter, inputs: dict[str, ModelInput], records: dict) -> None:
    """Meta's own code, where the spiritlm package is importable: prompt strings, ids and units."""
    try:
        import transformers
        from spiritlm.model.spiritlm_model import ContentType, GenerationInput, OutputModality, Spiritlm
        from spiritlm.speech_tokenizer import spiritlm_base
        from transformers import LlamaTokenizer
    except ImportError:
        report.add("spiritlm reference", "warn", "the spiritlm package is not importable: Meta's _build_prompt, "
                   "tokenizer and speech tokenizer were not run (pip install it from github.com/facebookresearch/spiritlm)")
        return
    from types import SimpleNamespace

    from known_speech.audio import waveform_of

    speech_tokenizer = spiritlm_base()
    meta = LlamaTokenizer.from_pretrained(str(adapter.checkpoint.lm_dir), add_bos_token=True, add_eos_token=False)
    owner = SimpleNamespace(speech_tokenizer=speech_tokenizer)
    for modality, model_input in inputs.items():
        record = records[modality]
        content = (GenerationInput(content=record["prompt"], content_type=ContentType.TEXT) if modality == "text" else
                   GenerationInput(content=torch.from_numpy(waveform_of(record["audio"])), content_type=ContentType.SPEECH))
        prompt = Spiritlm._build_prompt(owner, [content], OutputModality.TEXT)
        ids = meta(prompt)["input_ids"]
        same = prompt == model_input.prompt_text and ids == model_input.input_ids
        report.add(f"{modality}: Meta's prompt", "pass" if same else "fail",
                   f"_build_prompt + LlamaTokenizer (transformers {transformers.__version__}) "
                   + ("give the same string and ids" if same else f"give {prompt[:80]!r} / {ids[:12]} vs ours "
                      f"{model_input.prompt_text[:80]!r} / {model_input.input_ids[:12]}"))


def _example_audio(reference_audio: str | None) -> Path | None:
    """Meta's LibriSpeech example: the given file, else beside an installed spiritlm package (a git checkout)."""
    if reference_audio:
        return Path(reference_audio)
    try:
        import spiritlm
    except ImportError:
        return None
    return Path(spiritlm.__file__).resolve().parents[1] / LIBRISPEECH_EXAMPLE


def _check_example_units(report: ModelCheck, adapter: Adapter, path: Path | None) -> None:
    """Our speech tokenizer on Meta's LibriSpeech example against the units Meta's notebook prints."""
    if path is None or not path.exists():
        report.add("example units", "warn", f"{path or LIBRISPEECH_EXAMPLE} not found: pass --reference-audio "
                   f"<spiritlm checkout>/{LIBRISPEECH_EXAMPLE} to compare our units with the 228 Meta's notebook prints")
        return
    import soundfile

    from known_speech.audio import to_mono_16k

    samples, rate = soundfile.read(path, dtype="float32")
    units = adapter.speech_tokenizer.encode(to_mono_16k(samples, rate))
    expected = np.array(LIBRISPEECH_EXAMPLE_UNITS)
    if units.shape == expected.shape and (units == expected).all():
        report.add("example units", "pass", f"{path.name}: all {expected.size} units equal Meta's")
        return
    common = min(units.size, expected.size)
    mismatch = int(np.flatnonzero(units[:common] != expected[:common])[0]) if (units[:common] != expected[:common]).any() else common
    report.add("example units", "fail", f"{path.name}: {units.size} units vs Meta's {expected.size}; first difference "
               f"at frame {mismatch}: {units[mismatch:mismatch + 5].tolist()} vs {expected[mismatch:mismatch + 5].tolist()}")


def check_model(adapter: Adapter, records: dict[Modality, dict], recall_records: dict[Modality, list[dict]],
                reference_audio: str | None = None) -> ModelCheck:
    """Run every check; `records` holds the one record per modality whose input is shown."""
    report = ModelCheck(adapter.model_name, adapter.name)
    inputs: dict[str, ModelInput] = {}
    for modality, record in records.items():
        try:
            model_input = adapter.prepare(record, modality)
        except ValueError as err:
            report.add(f"{modality}: input", "fail", str(err))
            continue
        inputs[modality] = model_input
        _check_input(report, adapter, model_input, record)
        _check_units(report, model_input)
        _check_audio(report, adapter, model_input)
        _check_restoration(report, adapter, model_input, modality)
    for modality, recall in recall_records.items():
        if recall and modality in inputs:  # an input that could not be made has failed already
            _check_recall(report, adapter, recall, modality)
    if adapter.name == "spiritlm":
        if adapter.expressive:
            report.add("expressive", "pass", "[Pi..]/[St..] in the vocabulary: prompts interleave pitch and style tokens")
        _check_against_spiritlm(report, adapter, inputs, records)
        if adapter.checkpoint.speech_tokenizer_dir is not None:
            _check_example_units(report, adapter, _example_audio(reference_audio))
    return report
