"""known-speech: the Known factual prompts as speech, and causal tracing of speech LMs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("known-speech")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__", "trace_prompt", "load_causal_lm", "CausalTracer", "TraceOptions", "TraceResult",
           "adapter_class", "available_adapters", "load_unit_tokenizer", "verbalise"]

# the API, imported on first use so that `import known_speech` stays light
_LAZY = {
    "trace_prompt": "known_speech.api",
    "load_causal_lm": "known_speech.loading",
    "CausalTracer": "known_speech.tracing",
    "TraceOptions": "known_speech.tracing",
    "TraceResult": "known_speech.tracing",
    "adapter_class": "known_speech.evaluation.adapter",
    "available_adapters": "known_speech.evaluation.adapter",
    "load_unit_tokenizer": "known_speech.unit_tokenizer",
    "verbalise": "known_speech.spoken",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'known_speech' has no attribute {name!r}")
