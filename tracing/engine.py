"""Exact causal tracing, fast: restorations reuse the corrupted run and are batched.

A restoration of position t at layer l cannot change positions < t (causal attention) nor any
layer below the one it first touches. So each restoration starts at its first touched layer with
the corrupted run's residual stream at positions t..T-1, attends to the corrupted run's keys and
values for positions < t, and many restorations of the same t run as one batch whose rows join
at their own start layer. Work per restoration: (T - t) positions x (L - start) layers x samples.
The numbers equal the reference loop (`reference.py`, ROME's algorithm) to float rounding.
"""

from __future__ import annotations

import contextlib
import logging
import time

import torch
from torch import nn

from .architectures import ArchitectureSpec
from .attention import ATTENTION_NAME, SharedPrefix, SharedPrefixUnsupported, attention_implementation
from .decoder import DecoderRunner, PrefixKV, attention_backends
from .kernels import use_kernels
from .metric import Target
from .self_check import self_check
from .noise import corrupt, subject_noise
from .restoration import (
    Restoration,
    RunStates,
    SublayerHooks,
    TracingSelfCheckError,
    patch_rows,
    plan_restorations,
    rows_per_chunk,
)
from .result import TraceOptions, TraceResult

__all__ = ["CausalTracer"]

logger = logging.getLogger(__name__)


class CausalTracer:
    """ROME-style causal tracing of a Hugging Face decoder LM (hidden / MLP / attention)."""

    def __init__(self, model: nn.Module, spec: ArchitectureSpec | None = None, model_name: str = "",
                 compile: bool = False, kernels: str = "torch"):
        """compile: run the restorations through inductor-compiled sublayers (worth it on GPU, for
        many prompts: the first trace of each new shape pays the compilation). kernels: "liger" patches
        Liger Kernel's fused norms, rotary embedding and SwiGLU into `model` (CUDA; `tracing.kernels`)."""
        self.model = model
        self.compile = compile
        self.kernels = use_kernels(model, kernels, compile)
        self.runner = DecoderRunner(model, spec)
        self.model_name = model_name or getattr(getattr(model, "config", None), "_name_or_path", "")
        # restorations attend to the corrupted run's prefix through `attention.shared_prefix_attention`;
        # set to False, for good, the first time the model's attention does not take it that way
        self.shared_prefix = True

    # -- full runs -------------------------------------------------------------------------
    def _full_run(self, layer_input: torch.Tensor, hooks: SublayerHooks, read: int) -> RunStates:
        runner = self.runner
        rows, length, _ = layer_input.shape
        positions = torch.arange(length, device=runner.device)
        cache = PrefixKV(record=True)
        hooks.capture = {"mlp": [None] * runner.num_layers, "attn": [None] * runner.num_layers}
        mask = runner.causal_mask(length, 0)
        position_embeddings = runner.position_embeddings(layer_input, positions)
        hidden_in = [layer_input]
        hidden = layer_input
        for index in range(runner.num_layers):
            hidden = runner.run_layer(index, hidden, positions, cache, mask, position_embeddings)
            hidden_in.append(hidden)
        captured, hooks.capture = hooks.capture, None
        keys_values = [cache.recorded[index] for index in range(runner.num_layers)]
        return RunStates(hidden_in, keys_values, captured, runner.logits_last(hidden[:, -read:]))

    # -- restorations ----------------------------------------------------------------------
    def _run_layer(self, layer, hidden, positions, position, corrupted, mask, position_embeddings, restorations):
        """One layer on the suffix t.. of every row; positions < t come from the corrupted run."""
        runner = self.runner
        keys, values = corrupted.keys_values[layer]
        if self.shared_prefix:
            prefix = SharedPrefix(keys[:, :, :position], values[:, :, :position])
            output = runner.run_layer(layer, hidden, positions, None, None, position_embeddings, shared_prefix=prefix)
            if prefix.calls == 0:
                raise SharedPrefixUnsupported(f"layer {layer}'s attention did not go through the attention interface")
            return output
        cache = PrefixKV()
        if position > 0:  # every row its own copy; rows are sample-major
            cache = PrefixKV({layer: (keys[:, :, :position].repeat_interleave(restorations, dim=0),
                                      values[:, :, :position].repeat_interleave(restorations, dim=0))})
        return runner.run_layer(layer, hidden, positions, cache, mask, position_embeddings)

    def _run_chunk(
        self,
        chunk: list[Restoration],
        position: int,
        clean: RunStates,
        corrupted: RunStates,
        hooks: SublayerHooks,
        target: Target,
    ) -> torch.Tensor:
        """Scores (len(chunk),) of restorations that all start restoring at `position`."""
        runner = self.runner
        samples, length, hidden_size = corrupted.hidden_in[0].shape
        query_length = length - position
        positions = torch.arange(position, length, device=runner.device)
        mask = None if self.shared_prefix else runner.causal_mask(query_length, position)
        position_embeddings = runner.position_embeddings(corrupted.hidden_in[0][:1, position:], positions)
        order = sorted(chunk, key=lambda r: r.start_layer)  # rows join at their start layer
        rows_to_patch = patch_rows(order, samples, runner.num_layers, runner.device)
        active = 0
        state: torch.Tensor | None = None  # (samples, active restorations, q, d)
        for layer in range(order[0].start_layer, runner.num_layers + 1):
            joining = [r for r in order if r.start_layer == layer]
            if joining:
                entering = corrupted.hidden_in[layer][:, None, position:].repeat(1, len(joining), 1, 1)
                for offset, restoration in enumerate(joining):
                    if restoration.restore_input == "first":
                        entering[:, offset, 0] = clean.hidden_in[layer][0, position]
                    elif restoration.restore_input == "all":
                        entering[:, offset] = clean.hidden_in[layer][0, position:]
                state = entering if state is None else torch.cat([state, entering], dim=1)
                active += len(joining)
            if layer == runner.num_layers:
                break
            # where only the last position is read, its MLP alone runs in the last layer, and an MLP
            # restored at t < T-1 in that layer changes nothing that is read
            last_position_mlp = layer == runner.num_layers - 1 and query_length > 1 and target.positions == 1
            for kind in ("mlp", "attn"):
                rows = rows_to_patch.get((kind, layer))
                if rows is not None and not (kind == "mlp" and last_position_mlp):
                    hooks.patch[(kind, layer)] = (rows, clean.sublayer_out[kind][layer][0, position])
            with hooks.last_position_only(runner.mlp_modules[layer]) if last_position_mlp else contextlib.nullcontext():
                hidden = self._run_layer(layer, state.view(samples * active, query_length, hidden_size), positions,
                                         position, corrupted, mask, position_embeddings, active)
            state = hidden.view(samples, active, query_length, hidden_size)
            if hooks.patch:
                missed = sorted(hooks.patch)
                hooks.patch.clear()
                raise TracingSelfCheckError(
                    f"restorations {missed} were never applied: the module at that path did not run; "
                    f"check the ArchitectureSpec of model_type={self.model.config.model_type!r}"
                )
        read = target.positions
        logits = runner.logits_last(state[:, :, -read:].reshape(samples * active, read, hidden_size))
        scores = target.score(logits).view(samples, active).mean(dim=0)
        by_restoration = {id(r): score for r, score in zip(order, scores)}
        return torch.stack([by_restoration[id(r)] for r in chunk])

    def _restoration_context(self) -> contextlib.ExitStack:
        """The attention routed through the shared prefix and, if asked, the compiled sublayers (only
        with the shared prefix: the per-row prefix cache would make a graph per layer)."""
        stack = contextlib.ExitStack()
        if self.shared_prefix:
            stack.enter_context(attention_implementation(self.runner.attn_modules, ATTENTION_NAME))
            if self.compile:
                stack.enter_context(self.runner.compiled_sublayers())
        return stack

    def _run_group(self, group, position, clean, corrupted, hooks, target, options) -> list[torch.Tensor]:
        """Scores of one position's restorations, left on the device (reading them would sync)."""
        samples, length, _ = corrupted.hidden_in[0].shape
        per_chunk = rows_per_chunk(self.model, self.runner, self.shared_prefix, length - position, position, samples, options)
        scores: list[torch.Tensor] = []
        start = 0
        while start < len(group):
            chunk = group[start : start + per_chunk]
            try:
                with self._restoration_context():
                    scores.extend(self._run_chunk(chunk, position, clean, corrupted, hooks, target))
            except SharedPrefixUnsupported as error:
                hooks.patch.clear()
                if not self.shared_prefix:
                    raise
                logger.info("the attention does not take a shared prefix (%s); each row gets its own copy", error)
                self.shared_prefix = False
                continue
            except torch.OutOfMemoryError:
                hooks.patch.clear()
                if per_chunk == 1:
                    raise
                per_chunk = max(1, per_chunk // 2)
                logger.warning("out of memory: retrying with %d restorations per forward", per_chunk)
                torch.cuda.empty_cache()
                continue
            start += len(chunk)
        return scores

    # -- public ----------------------------------------------------------------------------
    @torch.no_grad()
    def trace(
        self,
        *,
        subject_range: tuple[int, int],
        answer_id: int | None = None,
        answer_ids: list[int] | None = None,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        options: TraceOptions = TraceOptions(),
        embedding_std: float | None = None,
        tokens: list[str] | None = None,
    ) -> TraceResult:
        """Trace one prompt given as `input_ids` (T,) or `inputs_embeds` (T, d); corrupt [start, end).

        The metric `options.metric` scores `answer_id` (prob, logprob) or all `answer_ids` (attribute: the
        input then ends with the attribute but its last token, and restorations default to the positions
        before the attribute)."""
        started = time.perf_counter()
        runner = self.runner
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            input_ids = torch.as_tensor(input_ids, device=runner.device).reshape(-1)
            inputs_embeds = runner.embed(input_ids)
        inputs_embeds = inputs_embeds.to(device=runner.device, dtype=runner.dtype)
        if inputs_embeds.dim() != 2:
            raise ValueError(f"inputs_embeds must be (positions, hidden); got shape {tuple(inputs_embeds.shape)}")
        length, hidden_size = inputs_embeds.shape
        start, end = subject_range
        if not 0 <= start < end <= length:
            raise ValueError(f"subject_range={subject_range} is not a non-empty range inside 0..{length}")
        ids = list(answer_ids) if answer_ids is not None else [answer_id]
        target = Target(tuple(int(i) for i in ids), options.metric)
        vocab = runner.unembed.weight.shape[0]
        if any(not 0 <= i < vocab for i in target.ids) or target.positions > length:
            raise ValueError(f"answer ids {list(target.ids)} are outside the vocabulary (size {vocab}) or the input")
        prompt_length = length - (target.positions - 1)
        token_range = tuple(range(prompt_length)) if options.token_range is None else options.token_range
        if any(not 0 <= p < length for p in token_range):
            raise ValueError(f"token_range={token_range} has positions outside 0..{length - 1}")

        if options.noise_std is not None:
            sigma = options.noise_std
        else:
            base = embedding_std if embedding_std is not None else inputs_embeds[start:end].float().std().item()
            sigma = options.noise_factor * base
        noise = subject_noise(options, end - start, hidden_size, sigma)
        all_positions = torch.arange(length, device=runner.device)
        clean_input = runner.layer_input(inputs_embeds.unsqueeze(0), all_positions)
        corrupted_input = runner.layer_input(corrupt(inputs_embeds, subject_range, noise), all_positions)

        hooks = SublayerHooks(runner)
        try:
            with attention_backends(runner.device):
                clean = self._full_run(clean_input, hooks, target.positions)
                corrupted = self._full_run(corrupted_input, hooks, target.positions)
                high = target.score(clean.last_logits[0]).item()
                low = target.score(corrupted.last_logits).mean().item()
                plan = plan_restorations(options.kinds, token_range, options.window, runner.num_layers)
                if options.self_check:
                    self_check(self, clean, corrupted, hooks, target, options, high, low, inputs_embeds)
                tables = {kind: torch.full((length, runner.num_layers), float("nan")) for kind in options.kinds}
                groups: dict[int, list[Restoration]] = {}
                for restoration in plan:
                    groups.setdefault(restoration.position, []).append(restoration)
                computed: list[tuple[Restoration, torch.Tensor]] = []
                for position, group in groups.items():
                    if position < start:
                        # before the subject the clean and corrupted runs are the same computation, so
                        # restoring there copies a state onto itself: the score is the corrupted one
                        for restoration in group:
                            tables[restoration.kind][position, restoration.layer] = low
                        continue
                    computed.extend(zip(group, self._run_group(group, position, clean, corrupted, hooks,
                                                               target, options)))
                # read every score at once: reading one waits for the device, stalling the next group
                values = torch.stack([score for _, score in computed]).tolist() if computed else []
                for (restoration, _), value in zip(computed, values):
                    tables[restoration.kind][restoration.position, restoration.layer] = value
        finally:
            hooks.remove()
        warnings = []
        if low > high:  # corrupting the subject should lower the score
            warnings.append(f"the corrupted score {low:.4g} is above the clean score {high:.4g}: a sign of a bad noise "
                            f"sigma ({sigma:.3g}) or of corrupted positions {start}..{end - 1} that are not the subject")
            logger.warning(warnings[-1])
        return TraceResult(
            tokens=tokens if tokens is not None else [str(i) for i in range(length)],
            subject_range=(start, end),
            answer="",
            answer_id=int(target.ids[0]),
            answer_ids=list(target.ids),
            high_score=high,
            low_score=low,
            scores={kind: table.numpy() for kind, table in tables.items()},
            noise_std=float(sigma),
            options=options,
            model_name=self.model_name,
            dtype=str(runner.dtype).removeprefix("torch."),
            input_ids=input_ids.tolist() if input_ids is not None else None,
            seconds=time.perf_counter() - started,
            metadata={"engine": self.describe()},
            warnings=warnings,
        )

    def describe(self) -> dict:
        """How the scores were computed (they differ between these by float rounding only)."""
        return {"compiled": self.compile, "kernels": self.kernels, "shared_prefix_attention": self.shared_prefix,
                "device": str(self.runner.device)}
