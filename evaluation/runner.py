"""The tracing benchmark runner: every recalled fact of a model, traced and cached item by item.

Layout of a run folder (`<out>/<model>/<modality>[-<voice>]/`):
    run.json             the settings and the calibrated noise level (a resumed run must match them)
    items/<id>.npz       TraceResult with the subject corrupted
    control/<id>.npz     TraceResult with a non-subject span of the same number of text tokens corrupted
    failed/<id>.json     why an item could not be traced (the run goes on)
    summary.json         counts and timings, written when every rank is done
Under `torchrun --nproc-per-node K` rank r traces items r, r+K, ...; each item's noise and settings do
not depend on the split, so the merged folder equals a single process's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from known_speech.atomic import atomic_write_text
from known_speech.tracing import CausalTracer, TraceOptions, TraceResult, subject_embedding_std

from .adapter import Adapter, Modality, ModelInput, adapter_class
from .filtering import filter_file, model_slug, read_filter

__all__ = [
    "TraceRunConfig",
    "TraceRunSummary",
    "run_trace",
    "balanced_shares",
    "load_records",
    "select_records",
    "control_text_range",
    "default_adapter",
    "item_ids",
    "load_item",
    "run_config",
]

logger = logging.getLogger(__name__)


def default_adapter(model: str) -> str:
    """`spiritlm` for Spirit LM names and release folders, `qwen2-audio` for Qwen2-Audio, else `hf-text`."""
    lowered = model.lower()
    if "spiritlm" in lowered or "spirit-lm" in lowered or (Path(model) / "spiritlm_model").is_dir():
        return "spiritlm"
    if "qwen2-audio" in lowered:
        return "qwen2-audio"
    return "hf-text"


@dataclass
class TraceRunConfig:
    model: str
    modality: Modality = "text"
    adapter: str = ""  # empty: chosen from the model name
    dataset: str = "known-speech"  # dataset repository folder (speech rows, recall filters)
    voice: str = ""  # voice config for speech
    kinds: tuple[str, ...] = ("hidden", "mlp", "attn")
    samples: int = 10
    window: int = 10
    noise_factor: float = 3.0
    control: bool = True
    limit: int | None = None
    unfiltered: bool = False  # trace every record, not only those the model recalls
    dtype: str = "auto"  # bfloat16 on CUDA, float32 on CPU
    adapter_options: dict = field(default_factory=dict)  # e.g. qwen2-audio's text_suffix

    def __post_init__(self) -> None:
        self.adapter = self.adapter or default_adapter(self.model)
        self.kinds = tuple(self.kinds)
        if self.modality not in ("text", "speech"):
            raise ValueError(f"modality={self.modality!r}: choose text or speech")
        if self.modality == "speech" and not self.voice:
            raise ValueError("modality=speech needs the voice config (--config), e.g. piper-en_US-joe-medium")
        TraceOptions(kinds=self.kinds, samples=self.samples, window=self.window)  # validates them

    def run_name(self) -> str:
        return "text" if self.modality == "text" else f"speech-{self.voice}"

    def run_dir(self, out: str | Path) -> Path:
        return Path(out) / model_slug(self.model) / self.run_name()

    @classmethod
    def from_dict(cls, data: dict) -> "TraceRunConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class TraceRunSummary:
    run_dir: str
    items: int
    traced: int
    failed: int
    seconds: float
    world_size: int
    per_rank_seconds: list[float] = field(default_factory=list)
    noise_std: float = 0.0
    # the tracing loop alone, per rank: what more GPUs divide (start-up, preparation and calibration they do not)
    per_rank_trace_seconds: list[float] = field(default_factory=list)


def control_text_range(subject: tuple[int, int], num_tokens: int) -> tuple[int, int] | None:
    """A span of as many text tokens as the subject, not overlapping it and short of the last token:
    the tokens right after the subject where they fit, else right before it; None when neither fits."""
    start, end = subject
    length = end - start
    if end + length <= num_tokens - 1:
        return end, end + length
    if start - length >= 0:
        return start - length, start
    return None


def control_span(model_input: ModelInput) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The control span's text-token range and its input positions, or None when it has no room."""
    control_text = control_text_range(model_input.subject_text_range, len(model_input.text_tokens))
    positions = model_input.positions_of_text_range(*control_text) if control_text else None
    return (control_text, positions) if positions else None


def load_records(modality: Modality, dataset: str | Path, voice: str = "") -> list[dict]:
    """Text: the Known source records; speech: the rows of the built voice config, in known_id order."""
    if modality == "text":
        from known_speech.source import load_known

        records = [asdict(record) | {"subject_char_span": list(record.subject_char_span)} for record in load_known()]
    else:
        import datasets

        if not (Path(dataset) / "README.md").exists():
            raise ValueError(f"dataset {str(dataset)!r} has no built voice; run `known-speech build` first")
        records = list(datasets.load_dataset(str(dataset), voice, split="train"))
    return sorted(records, key=lambda record: int(record["known_id"]))


def select_records(config: TraceRunConfig, records: list[dict]) -> list[dict]:
    """The model's recalled facts in this modality (exact or partial), up to `limit`."""
    if not config.unfiltered:
        path = filter_file(config.dataset, config.model, config.modality, config.voice)
        recalled = {known_id for known_id, row in read_filter(path).items() if row.match != "none"}
        if not path.exists():
            raise ValueError(
                f"no recall filter at {path}: run `known-speech filter --model {config.model} --modality "
                f"{config.modality}{' --config ' + config.voice if config.voice else ''}` first (or pass --unfiltered)"
            )
        records = [record for record in records if int(record["known_id"]) in recalled]
    return records[: config.limit]


class _Distributed:
    """Rank and world size from torchrun's environment; a process group only when there are several."""

    def __init__(self, device: str):
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = f"cuda:{self.local_rank}" if device == "cuda" else device
        if self.world_size > 1 and not torch.distributed.is_initialized():
            if device.startswith("cuda"):
                torch.cuda.set_device(self.local_rank)
            torch.distributed.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def broadcast(self, value: object) -> object:
        """Rank 0's value on every rank: decisions that must agree even if ranks saw different files."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: object) -> list[object]:
        if self.world_size == 1:
            return [value]
        gathered: list[object] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered


def trace_cost(model_input: ModelInput | None, record: dict, control: bool) -> float:
    """Rough engine work of one item, for sharing items between ranks: each restored position from
    the subject on runs the rest of the prompt, once per span traced. Unprepared items (a resumed
    run) count the prompt's characters instead of positions."""
    if model_input is None:
        length, start, spans = len(record["prompt"]), 0, 1 + control
    else:
        length, start = model_input.length, model_input.subject_range[0]
        spans = 1 + bool(control and control_span(model_input))
    return float(spans * (length - start + 1) * length)


def _item_paths(run_dir: Path, known_id: int) -> tuple[Path, Path, Path]:
    """The item's subject trace, control trace and failure record."""
    return (run_dir / "items" / f"{known_id}.npz", run_dir / "control" / f"{known_id}.npz",
            run_dir / "failed" / f"{known_id}.json")


def _finished(run_dir: Path, known_id: int, control: bool, retry_failed: bool) -> bool:
    """Nothing left to trace for this item (a control span it has no room for is found out later)."""
    subject_path, control_path, failure_path = _item_paths(run_dir, known_id)
    if failure_path.exists() and not retry_failed:
        return True
    return subject_path.exists() and (not control or control_path.exists())


def balanced_shares(costs: dict[int, float], world_size: int) -> list[list[int]]:
    """Items to ranks, costliest first to the least loaded rank (LPT), each share in id order: ranks
    finish together, where round-robin leaves one rank with the long prompts."""
    loads = [0.0] * world_size
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for known_id in sorted(costs, key=lambda i: (-costs[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        loads[rank] += costs[known_id]
        shares[rank].append(known_id)
    return [sorted(share) for share in shares]


def _prepare_one(adapter: Adapter, record: dict, modality: Modality) -> ModelInput:
    try:
        return adapter.prepare(record, modality)
    except (ValueError, KeyError) as err:
        raise ValueError(f"prepare: {err}") from err


def _prepare_all(adapter: Adapter, records: list[dict], modality: Modality, failed: dict[int, str]) -> dict[int, ModelInput]:
    """Inputs of every selected item: the noise is calibrated over all of them, on every rank alike."""
    prepared: dict[int, ModelInput] = {}
    for record in tqdm(records, desc="prepare inputs", unit="item", disable=None):
        try:
            prepared[int(record["known_id"])] = _prepare_one(adapter, record, modality)
        except ValueError as err:
            failed[int(record["known_id"])] = str(err)
    return prepared


def _calibrate_noise(adapter: Adapter, inputs: dict[int, ModelInput], noise_factor: float) -> float:
    """noise_factor x the std of the subjects' input embeddings over the whole run (ROME), per modality."""
    with torch.no_grad():
        subjects = [adapter.input_embeddings(model_input)[slice(*model_input.subject_range)] for model_input in inputs.values()]
    return noise_factor * subject_embedding_std(subjects)


def _check_resume(run_dir: Path, config: TraceRunConfig) -> dict | None:
    path = run_dir / "run.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    settings = json.loads(json.dumps(asdict(config)))  # tuples as lists, as saved
    differing = {key for key, value in settings.items() if key != "limit" and saved["config"].get(key) != value}
    if differing:
        raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(sorted(differing))}); use another --out")
    return saved


def _trace_one(tracer: CausalTracer, model_input: ModelInput, corrupted: tuple[int, int], corrupted_text: tuple[int, int],
               span: str, record: dict, options: TraceOptions) -> TraceResult:
    kwargs = ({"input_ids": torch.tensor(model_input.input_ids)} if model_input.input_ids is not None
              else {"inputs_embeds": model_input.inputs_embeds})
    result = tracer.trace(subject_range=corrupted, answer_id=model_input.answer.id, options=options,
                          tokens=model_input.labels, **kwargs)
    result.answer = record["attribute"]
    result.metadata.update({
        "known_id": model_input.known_id,
        "modality": model_input.modality,
        "span": span,
        "prompt": record["prompt"],
        "subject": record["subject"],
        "attribute": record["attribute"],
        "text_tokens": model_input.text_tokens,
        "text_token_of_position": model_input.text_token_of_position,
        "subject_text_range": list(model_input.subject_text_range),
        "corrupted_text_range": list(corrupted_text),
        **model_input.provenance(),
    })
    return result


def run_trace(config: TraceRunConfig, out: str | Path = "results", device: str = "cpu", retry_failed: bool = False,
              adapter: Adapter | None = None, compile: bool = False) -> TraceRunSummary:
    """Trace the selected items not yet in the run folder; safe to stop and start again.

    compile: the engine's inductor-compiled sublayers, an execution choice like the device (results
    differ by float rounding only), so not one of the run's settings."""
    started = time.perf_counter()
    dist = _Distributed(device)
    run_dir = config.run_dir(out)
    saved = _check_resume(run_dir, config)
    records = select_records(config, load_records(config.modality, config.dataset, config.voice))
    adapter = adapter or adapter_class(config.adapter)(config.model, device=dist.device, dtype=config.dtype,
                                                       **config.adapter_options)
    adapter.check_modality(config.modality)
    failed: dict[int, str] = {}
    inputs: dict[int, ModelInput] = {}  # a resumed run has its noise level: items are prepared when traced
    if saved:
        noise_std = saved["noise_std"]
    else:
        inputs = _prepare_all(adapter, records, config.modality, failed)
        if not inputs:
            raise ValueError(f"no item of {config.model} ({config.modality}) could be prepared: "
                             f"{failed or 'the selection is empty'}")
        noise_std = _calibrate_noise(adapter, inputs, config.noise_factor)
    if dist.rank == 0 and not saved:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "run.json", json.dumps({"config": asdict(config), "noise_std": noise_std,
                                                           "adapter_class": type(adapter).__qualname__,
                                                           "torch_dtype": str(adapter.dtype).removeprefix("torch.")},
                                                          indent=2))
    dist.barrier()
    options = TraceOptions(kinds=config.kinds, samples=config.samples, window=config.window, noise_std=noise_std)
    tracer = CausalTracer(adapter.decoder, model_name=config.model, compile=compile)
    by_id = {int(record["known_id"]): record for record in records}
    shares = None
    if dist.rank == 0:
        costs = {known_id: 0.0 if known_id in failed or _finished(run_dir, known_id, config.control, retry_failed)
                 else trace_cost(inputs.get(known_id), record, config.control) for known_id, record in by_id.items()}
        shares = balanced_shares(costs, dist.world_size)
    share = dist.broadcast(shares)[dist.rank]
    for folder in ("items", "control", "failed"):
        (run_dir / folder).mkdir(parents=True, exist_ok=True)
    loop_started = time.perf_counter()
    for known_id in tqdm(share, desc=f"trace {config.run_name()} (rank {dist.rank})", unit="item", position=dist.rank):
        subject_path, control_path, failure_path = _item_paths(run_dir, known_id)
        if _finished(run_dir, known_id, config.control, retry_failed):
            continue
        try:
            if known_id in failed:
                raise ValueError(failed[known_id])
            record = by_id[known_id]
            model_input = inputs[known_id] if known_id in inputs else _prepare_one(adapter, record, config.modality)
            if not subject_path.exists():
                _trace_one(tracer, model_input, model_input.subject_range, model_input.subject_text_range, "subject",
                           record, options).save(subject_path)
            control = control_span(model_input) if config.control and not control_path.exists() else None
            if control:
                control_text, control_positions = control
                _trace_one(tracer, model_input, control_positions, control_text, "control", record,
                           options).save(control_path)
            failure_path.unlink(missing_ok=True)
        except (ValueError, KeyError, torch.OutOfMemoryError) as err:
            logger.warning("known_id=%d failed: %s", known_id, err)
            atomic_write_text(failure_path, json.dumps({"known_id": known_id, "reason": str(err)}))
    finished = time.perf_counter()
    logger.info("rank %d: %d items, %.1f s tracing after %.1f s of start-up", dist.rank, len(share),
                finished - loop_started, loop_started - started)
    per_rank, per_rank_trace = zip(*dist.gather((finished - started, finished - loop_started)))
    dist.barrier()
    summary = TraceRunSummary(
        run_dir=str(run_dir), items=len(by_id), traced=len(list((run_dir / "items").glob("*.npz"))),
        failed=len(list((run_dir / "failed").glob("*.json"))), seconds=float(max(per_rank)), world_size=dist.world_size,
        per_rank_seconds=[float(s) for s in per_rank], noise_std=float(noise_std),
        per_rank_trace_seconds=[float(s) for s in per_rank_trace],
    )
    if dist.rank == 0:
        atomic_write_text(run_dir / "summary.json", json.dumps(asdict(summary), indent=2))
    dist.close()
    return summary


def item_ids(run_dir: str | Path, span: str = "items") -> list[int]:
    return sorted(int(path.stem) for path in (Path(run_dir) / span).glob("*.npz"))


def load_item(run_dir: str | Path, known_id: int, span: str = "items") -> TraceResult:
    return TraceResult.load(Path(run_dir) / span / f"{known_id}.npz")


def run_config(run_dir: str | Path) -> tuple[TraceRunConfig, float]:
    saved = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    return TraceRunConfig.from_dict(saved["config"]), float(saved["noise_std"])

