"""Under what terms a voice's audio comes, as the voice's own card states it, for the dataset card.

The Known prompts are MIT; the audio follows the voice: a Piper voice's MODEL_CARD names its training
data and that data's licence; MeloTTS and Kokoro publish their weights under MIT and Apache-2.0;
espeak-ng synthesises by rule from no recorded voice; external audio states its licence in its manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["VoiceLicence", "voice_licence", "SPDX"]

# licence names as voice cards write them -> the Hub's licence ids
SPDX = {"cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0", "cc-by-4.0": "cc-by-4.0", "cc by 4.0": "cc-by-4.0", "mit": "mit",
        "apache-2.0": "apache-2.0", "apache 2.0": "apache-2.0", "cc-by-sa-4.0": "cc-by-sa-4.0"}


@dataclass(frozen=True)
class VoiceLicence:
    licence: str  # as the voice's card states it
    hub_id: str | None  # the Hub's licence id, where the statement maps to one
    training_data: str  # what the voice learnt from, as its card says
    source: str  # where the statement comes from

    def to_dict(self) -> dict:
        return asdict(self)


def _piper(voice: str) -> VoiceLicence:
    from known_speech.settings import DEFAULT_VOICE, bundled_piper_voice

    model = bundled_piper_voice() if voice == DEFAULT_VOICE else Path(voice)
    card = model.parent / "MODEL_CARD"
    if not card.exists():
        return VoiceLicence("not stated beside the voice", None, "", f"https://huggingface.co/rhasspy/piper-voices ({voice})")
    text = card.read_text(encoding="utf-8")
    dataset = text.split("## Dataset", 1)[-1]
    licence = re.search(r"\*\s*License:\s*(.+)", dataset)
    url = re.search(r"\*\s*URL:\s*(\S+)", dataset)
    finetuned = re.search(r"Finetuned from (.+?)\.?\s*$", text, re.MULTILINE)
    stated = licence.group(1).strip() if licence else "not stated"
    training = ", ".join(part for part in (url.group(1) if url else "",
                                           f"finetuned from {finetuned.group(1)}" if finetuned else "") if part)
    return VoiceLicence(stated, SPDX.get(stated.lower()), training, f"{model.stem} MODEL_CARD")


def voice_licence(engine: str, voice: str) -> VoiceLicence:
    if engine in ("piper", "piper-subprocess"):
        return _piper(voice)
    if engine == "espeak-ng":
        return VoiceLicence("rule-based synthesis (espeak-ng, GPL-3.0-or-later); no recorded voice", None,
                            "none: formant synthesis", "espeak-ng")
    if engine == "melotts":
        return VoiceLicence("MIT (MeloTTS)", "mit", "see the MeloTTS model card", "github.com/myshell-ai/MeloTTS")
    if engine == "kokoro":
        return VoiceLicence("Apache-2.0 (Kokoro-82M)", "apache-2.0", "see the Kokoro-82M model card",
                            "huggingface.co/hexgrad/Kokoro-82M")
    if engine == "external":
        manifest = Path(voice) / "manifest.json"
        data = json.loads(manifest.read_text(encoding="utf-8")) if manifest.exists() else {}
        stated = str(data.get("license") or "not stated (add \"license\" to manifest.json)")
        return VoiceLicence(stated, SPDX.get(stated.lower()), str(data.get("training_data", "")), "manifest.json")
    return VoiceLicence("not stated", None, "", engine)
