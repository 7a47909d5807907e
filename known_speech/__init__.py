"""known-speech: the Known factual prompts as speech, and causal tracing of speech LMs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("known-speech")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
