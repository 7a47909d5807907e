"""The tracing benchmark run: every selected fact of a model, traced and saved item by item, resumable,
and shared between torchrun ranks (each item's noise and settings do not depend on the split, so the
merged folder equals a single process's)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from known_speech.progress import bars_disabled, progress
from known_speech.tracing import CausalTracer, TraceOptions, TraceResult
from known_speech.tracing.kernels import check_kernels
from known_speech.tracing.noise import EmbeddingMoments
from known_speech.tracing.prompts import attribute_ids

from .adapter import Adapter, adapter_class
from .model_input import Modality, ModelInput
from .records import load_records, recalled_records
from .run_config import TraceRunConfig
from .run_folder import RunFolder, RunSettings, TraceRunSummary
from .sharding import Distributed, balanced_shares, trace_cost

__all__ = ["run_trace", "select_records", "scored_input"]

logger = logging.getLogger(__name__)


def select_records(config: TraceRunConfig) -> list[dict]:
    """The records of the run's modality the model recalls (in `recalled_in` where given: speech inputs of the
    facts recalled from text, or of those recalled from both; all with `unfiltered`); `limit` is not applied:
    the noise level is calibrated on all of them, so that a run extended by a larger limit keeps it."""
    records = load_records(config.modality, config.dataset, config.voice_config)
    if config.unfiltered:
        return records
    selecting = config.recalled_in or config.modality
    for modality in ("text", "speech") if selecting == "both" else (selecting,):
        records = recalled_records(records, config.dataset, config.model, modality,
                                   config.voice_config if modality == "speech" else "", config.subject_dependent)
    return records


def _chosen(config: TraceRunConfig, selection: list[dict]) -> list[dict]:
    """The items traced: the selection's first `limit`, or those of `known_ids`; an empty choice is refused with why
    and what to do, before the model loads."""
    if config.known_ids:
        ids = {int(r["known_id"]) for r in selection}
        missing = [k for k in config.known_ids if k not in ids]
        if missing:
            raise ValueError(f"--known-id {' '.join(map(str, missing))}: not among the {len(selection)} prompts "
                             f"{_selected_by(config)}; pass --unfiltered to trace them anyway, or --recalled-in text")
        return [r for r in selection if int(r["known_id"]) in set(config.known_ids)]
    if not selection:
        asked = len(load_records(config.modality, config.dataset, config.voice_config))
        raise ValueError(f"0 of {asked} prompts {_selected_by(config)}: trace the facts recalled from text with "
                         f"--recalled-in text, every prompt with --unfiltered, chosen ones with --known-id, or filter a "
                         f"larger build")
    return selection[: config.limit]


def _selected_by(config: TraceRunConfig) -> str:
    if config.unfiltered:
        return f"of {config.dataset}"
    selecting = config.recalled_in or config.modality
    how = {"text": "from text", "speech": "from speech", "both": "from both text and speech"}[selecting]
    return f"recalled {how} by {config.model}" + (" that rest on the subject" if config.subject_dependent else "")


def calibration_records(config: TraceRunConfig, selection: list[dict]) -> list[dict]:
    """The records sigma is calibrated on: the selection, except for `recalled_in=both` and the subject-dependent
    facts, whose runs keep the sigma of the traced modality's own filter, so that their traces equal the plain
    run's on the same prompt."""
    if config.recalled_in != "both" and not config.subject_dependent:
        return selection
    return select_records(replace(config, recalled_in=None, subject_dependent=False))


def calibration_digest(records: list[dict]) -> str:
    return hashlib.sha256(json.dumps(sorted(int(r["known_id"]) for r in records)).encode()).hexdigest()[:16]


def _prepare(adapter: Adapter, record: dict, modality: Modality) -> ModelInput:
    try:
        return adapter.prepare(record, modality)
    except (ValueError, KeyError) as err:
        raise ValueError(f"prepare: {err}") from err


def _prepare_all(adapter: Adapter, records: list[dict], modality: Modality, failed: dict[int, str]) -> dict[int, ModelInput]:
    """Inputs of the given items (a rank's own: its share of the run and of the calibration)."""
    prepared: dict[int, ModelInput] = {}
    for record in progress(records, desc="prepare inputs", unit="item", disable=bars_disabled()):
        try:
            prepared[int(record["known_id"])] = _prepare(adapter, record, modality)
        except ValueError as err:
            failed[int(record["known_id"])] = str(err)
    return prepared


def _subject_moments(adapter: Adapter, inputs: dict[int, ModelInput]) -> dict[int, EmbeddingMoments]:
    """Per item, the moments of its subject's input embeddings (ROME's noise level is their std)."""
    with torch.no_grad():
        return {known_id: EmbeddingMoments.of(adapter.input_embeddings(model_input)[slice(*model_input.subject_range)])
                for known_id, model_input in inputs.items()}


def _calibration_items(selection: list[dict], shares: list[list[int]], rank: int) -> list[dict]:
    """What a rank prepares when sigma is new: its own share of the run, and every world_size-th item of
    the selection that no rank traces (sigma is calibrated on the whole selection, each item once)."""
    traced = {known_id for share in shares for known_id in share}
    untraced = [record for record in selection if int(record["known_id"]) not in traced]
    own = set(shares[rank])
    return [record for record in selection if int(record["known_id"]) in own] + untraced[rank::len(shares)]


def scored_input(adapter: Adapter, model_input: ModelInput, record: dict, options: TraceOptions) -> tuple[ModelInput, list[int]]:
    """The input the metric reads and the ids it scores: the answer token at the prompt's end, or for
    `attribute` every token the attribute adds to the prompt string, all but the last teacher-forced."""
    if options.metric != "attribute":
        return model_input, [model_input.answer.id]
    tokenizer = adapter.tokenizer
    try:
        ids = attribute_ids(tokenizer, model_input.prompt_text, record["attribute"], model_input.answer_separator)
    except ValueError as err:
        raise ValueError(f"known_id={record['known_id']}: field 'attribute': {err}") from err
    forced = ids[:-1]
    embeddings = None
    if model_input.inputs_embeds is not None and forced:
        with torch.no_grad():
            embeddings = adapter.decoder.get_input_embeddings()(torch.tensor(forced, device=adapter.device))
        embeddings = embeddings.to(model_input.inputs_embeds)
    return model_input.continued(forced, embeddings, [tokenizer.decode([i]) for i in forced],
                                 tokenizer.convert_ids_to_tokens(forced)), ids


def _trace_one(tracer: CausalTracer, adapter: Adapter, model_input: ModelInput, corrupted: tuple[int, int],
               corrupted_text: tuple[int, int], span: str, record: dict, options: TraceOptions) -> TraceResult:
    model_input, answer_ids = scored_input(adapter, model_input, record, options)
    kwargs = ({"input_ids": torch.tensor(model_input.input_ids)} if model_input.input_ids is not None
              else {"inputs_embeds": model_input.inputs_embeds})
    result = tracer.trace(subject_range=corrupted, answer_ids=answer_ids, options=options,
                          tokens=model_input.labels, **kwargs)
    result.answer = model_input.answer.text if options.metric != "attribute" else record["attribute"].strip()
    result.metadata.update({
        "known_id": model_input.known_id, "modality": model_input.modality, "span": span,
        "prompt": record["prompt"], "subject": record["subject"], "attribute": record["attribute"],
        "positions": model_input.position_map(corrupted_text).to_dict(),
        **model_input.provenance(),
    })
    return result


def _trace_item(tracer: CausalTracer, adapter: Adapter, folder: RunFolder, model_input: ModelInput, record: dict, options: TraceOptions,
                control: bool) -> None:
    """The subject trace, then the control span's where it has room; each saved as soon as it is done."""
    subject_file, control_file = folder.item_file(model_input.known_id), folder.item_file(model_input.known_id, "control")
    if not subject_file.exists():
        _trace_one(tracer, adapter, model_input, model_input.subject_range, model_input.subject_text_range, "subject",
                   record, options).save(subject_file)
    span = model_input.control_span() if control and not control_file.exists() else None
    if span:
        control_text, control_positions = span
        _trace_one(tracer, adapter, model_input, control_positions, control_text, "control", record, options).save(control_file)


def run_trace(config: TraceRunConfig, out: str | Path = "results", device: str = "cpu", retry_failed: bool = False,
              adapter: Adapter | None = None, compile: bool = False, records: list[dict] | None = None,
              kernels: str = "torch") -> TraceRunSummary:
    """Trace the selected items not yet in the run folder; safe to stop and start again.

    Under torchrun each rank prepares only its own items (its share, by an estimate from the records,
    and its part of the calibration set); sigma comes from all ranks' subject moments, merged exactly.
    compile: the engine's inductor-compiled sublayers, an execution choice like the device (results
    differ by float rounding only), so not one of the run's settings; so is `kernels` ("liger": fused
    norms, rotary and SwiGLU on CUDA). Each result records both under metadata["engine"]. records: the selection itself,
    where it is not read from the dataset folder (a benchmark's synthetic rows)."""
    started = time.perf_counter()
    adapter_cls = type(adapter) if adapter is not None else adapter_class(config.adapter)
    adapter_cls.check_modality(config.modality)
    check_kernels(kernels, device, compile)
    dist = Distributed(device)
    folder = RunFolder.of(config, out)
    saved = folder.resume(config)
    selection = records if records is not None else select_records(config)
    calibration = records if records is not None else calibration_records(config, selection)
    if saved and saved.calibration_digest not in ("", calibration_digest(calibration)):
        raise ValueError(f"{folder.path}: sigma was calibrated on {saved.calibrated_on} items, and the selection has "
                         f"changed since (now {len(calibration)}, e.g. after a new filter); use another --out")
    by_id = {int(record["known_id"]): record for record in _chosen(config, selection)}
    shares = None
    if dist.rank == 0:
        costs = {known_id: 0.0 if folder.finished(known_id, config.control, retry_failed)
                 else trace_cost(record, config.control) for known_id, record in by_id.items()}
        shares = balanced_shares(costs, dist.world_size)
    shares = dist.broadcast(shares)
    share = shares[dist.rank]
    adapter = adapter or adapter_cls(config.model, device=dist.device, dtype=config.dtype, **config.adapter_options)
    failed: dict[int, str] = {}
    inputs: dict[int, ModelInput] = {}  # a resumed run has its noise level: items are prepared when traced
    if saved:
        folder.check_model(saved, adapter.describe())
        noise_std = saved.noise_std
    else:
        inputs = _prepare_all(adapter, _calibration_items(calibration, shares, dist.rank), config.modality, failed)
        moments = {}
        for part in dist.gather(_subject_moments(adapter, inputs)):
            moments.update(part)
        if not moments:
            reasons = {k: v for part in dist.gather(failed) for k, v in part.items()}
            raise ValueError(f"no item of {config.model} ({config.modality}) could be prepared: "
                             f"{reasons or 'the selection is empty'}")
        noise_std = config.trace.noise_factor * EmbeddingMoments.std([moments[k] for k in sorted(moments)])
        inputs = {known_id: inputs[known_id] for known_id in share if known_id in inputs}  # the rest calibrated only
        if dist.rank == 0:
            folder.write_settings(RunSettings(config, noise_std, type(adapter).__qualname__,
                                              str(adapter.dtype).removeprefix("torch."), len(moments),
                                              calibration_digest(calibration), adapter.describe(),
                                              datetime.now(timezone.utc).isoformat(timespec="seconds")))
    dist.barrier()
    options = config.options(noise_std)
    tracer = CausalTracer(adapter.decoder, model_name=config.model, compile=compile, kernels=kernels)
    folder.make_dirs()
    loop_started = time.perf_counter()
    for known_id in progress(share, desc=f"trace {config.run_name} (rank {dist.rank})", unit="item", position=dist.rank,
                         disable=bars_disabled()):
        if folder.finished(known_id, config.control, retry_failed):
            continue
        try:
            if known_id in failed:
                raise ValueError(failed[known_id])
            record = by_id[known_id]
            model_input = inputs[known_id] if known_id in inputs else _prepare(adapter, record, config.modality)
            _trace_item(tracer, adapter, folder, model_input, record, options, config.control)
            folder.clear_failure(known_id)
        except (ValueError, KeyError, torch.OutOfMemoryError) as err:
            logger.warning("known_id=%d failed: %s", known_id, err)
            folder.record_failure(known_id, str(err))
        inputs.pop(known_id, None)
    finished = time.perf_counter()
    logger.info("rank %d: %d items, %.1f s tracing after %.1f s of start-up", dist.rank, len(share),
                finished - loop_started, loop_started - started)
    per_rank, per_rank_trace = zip(*dist.gather((finished - started, finished - loop_started)))
    dist.barrier()
    summary = TraceRunSummary(
        run_dir=str(folder.path), items=len(by_id), traced=len(folder.item_ids()), failed=folder.failures(),
        seconds=float(max(per_rank)), world_size=dist.world_size, per_rank_seconds=[float(s) for s in per_rank],
        noise_std=float(noise_std), per_rank_trace_seconds=[float(s) for s in per_rank_trace],
    )
    if dist.rank == 0:
        folder.write_summary(summary)
    dist.close()
    return summary
