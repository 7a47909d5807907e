"""Model-agnostic causal tracing of decoder LMs (hidden / MLP / attention). Knows nothing of speech."""

from .architectures import ARCHITECTURES, ArchitectureSpec, UnsupportedArchitecture, register_architecture, spec_for
from .engine import CausalTracer
from .restoration import TracingSelfCheckError, window_layers
from .noise import subject_embedding_std
from .result import KINDS, Kind, TraceOptions, TraceResult

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "CausalTracer",
    "KINDS",
    "Kind",
    "TraceOptions",
    "TraceResult",
    "TracingSelfCheckError",
    "UnsupportedArchitecture",
    "register_architecture",
    "spec_for",
    "subject_embedding_std",
    "window_layers",
]
