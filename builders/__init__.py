"""The Hugging Face datasets builder of known-speech and its stages (TTS, ASR, alignment, writing)."""
