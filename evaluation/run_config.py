"""The settings of a tracing benchmark run: which model, which records, and the trace options."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from known_speech.layout import model_slug, selection_name
from known_speech.tracing import TraceOptions

from .model_input import Modality

__all__ = ["TraceRunConfig"]


@dataclass
class TraceRunConfig:
    """A run: the model and its adapter, the records (modality, voice config, filter), and `trace`, the
    tracer's options (noise level calibrated per run, so `trace.noise_std` stays None here)."""

    model: str
    modality: Modality = "text"
    adapter: str = ""  # empty: the adapter that handles the model
    dataset: str = "known-speech"  # dataset repository folder (speech rows, recall filters)
    voice_config: str = ""  # for speech
    trace: TraceOptions = field(default_factory=TraceOptions)
    control: bool = True
    limit: int | None = None
    known_ids: tuple[int, ...] = ()  # trace only these of the selection (sigma is still the whole selection's)
    unfiltered: bool = False  # trace every record, not only those the model recalls
    recalled_in: Modality | Literal["both"] | None = None  # the filter that selects (default: the run's own);
    # both: the facts recalled from text and from speech, the prompts a paired S→T − T→T comparison shares
    subject_dependent: bool = False  # only the facts whose recall rests on the subject (the `_subject` views)
    dtype: str = "auto"  # bfloat16 on CUDA, float32 on CPU
    adapter_options: dict = field(default_factory=dict)  # e.g. qwen2-audio's text_suffix

    def __post_init__(self) -> None:
        if not self.adapter:
            from .adapter import adapter_for

            self.adapter = adapter_for(self.model)
        if self.modality not in ("text", "speech"):
            raise ValueError(f"modality={self.modality!r}: choose text or speech")
        if self.modality == "speech" and not self.voice_config:
            raise ValueError("modality=speech needs the voice config (--config), e.g. piper-en_US-joe-medium")
        self.known_ids = tuple(int(k) for k in self.known_ids)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit={self.limit}: need a positive number of items, or none for all")
        if self.recalled_in not in (None, "text", "speech", "both"):
            raise ValueError(f"recalled_in={self.recalled_in!r}: choose text, speech or both")
        if self.recalled_in in ("speech", "both") and not self.voice_config:
            raise ValueError(f"recalled_in={self.recalled_in} needs the voice config (--config) whose recall filter "
                             "selects, e.g. piper-en_US-joe-medium")
        if self.unfiltered and (self.recalled_in or self.subject_dependent):
            raise ValueError("--unfiltered traces every record; --recalled-in and --subject-dependent select by a "
                             "filter: give one of them")
        if self.trace.noise_factor <= 0:
            raise ValueError(f"noise_factor={self.trace.noise_factor}: must be positive")

    @property
    def run_name(self) -> str:
        """text or speech-<voice config>; the filter that selects, where it is another modality's or both (with
        the voice, for text); `-subject` for the subject-dependent facts; the metric where it is not ROME's P(answer)."""
        name = selection_name(self.modality, self.voice_config)
        if self.recalled_in and self.recalled_in != self.modality:
            name += f"-recalled-in-{self.recalled_in}"
            if self.modality == "text" and self.recalled_in in ("speech", "both"):
                name += f"-{self.voice_config}"  # the voice whose filter selects
        if self.subject_dependent:
            name += "-subject"
        return name if self.trace.metric == "prob" else f"{name}-{self.trace.metric}"

    def run_dir(self, out: str | Path) -> Path:
        return Path(out) / model_slug(self.model) / self.run_name

    def options(self, noise_std: float) -> TraceOptions:
        return replace(self.trace, noise_std=noise_std)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["trace"]["kinds"] = list(self.trace.kinds)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TraceRunConfig":
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        trace = dict(values.pop("trace", {}))
        trace["kinds"] = tuple(trace.get("kinds", TraceOptions().kinds))
        if trace.get("token_range") is not None:
            trace["token_range"] = tuple(trace["token_range"])
        return cls(trace=TraceOptions(**trace), **values)
