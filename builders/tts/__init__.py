"""Text-to-speech engines behind one interface, looked up by name."""

from .base import ENGINES, Synthesis, TTSEngine, VoiceInfo, create_engine, register_engine

__all__ = ["ENGINES", "Synthesis", "TTSEngine", "VoiceInfo", "create_engine", "register_engine"]
