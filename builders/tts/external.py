"""`external`: audio made elsewhere, as a folder of files plus a manifest (known_id -> file).

    <folder>/manifest.json   {"engine": "...", "voice": "...", "version": "...",
                              "files": {"0": "0000.wav", "1": "0001.flac", ...}}
Audio is decoded with soundfile and resampled to 16 kHz by the build; word times come from Whisper.
"""

from __future__ import annotations

import json
from pathlib import Path

import soundfile

from known_speech.spoken import SpokenForm

from .base import Synthesis, VoiceInfo

__all__ = ["ExternalEngine", "MANIFEST"]

MANIFEST = "manifest.json"


class ExternalEngine:
    def __init__(self, voice: str):
        self.folder = Path(voice)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise ValueError(f"voice={voice!r}: the external engine needs a folder with {MANIFEST}")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ValueError(f"{path}: field 'files' must map known_id to an audio file in the folder")
        self.files = {}
        folder = self.folder.resolve()
        for known_id, name in manifest["files"].items():
            if not str(known_id).lstrip("-").isdigit() or not isinstance(name, str):
                raise ValueError(f"{path}: field 'files' entry {known_id!r}: {name!r}: expected \"<known_id>\": "
                                 f"\"<file name>\"")
            file = (folder / name).resolve()
            if Path(name).is_absolute() or folder not in file.parents:
                raise ValueError(f"{path}: field 'files' entry {known_id!r} names {name!r}, outside {folder}; "
                                 f"name files relative to the manifest's folder")
            self.files[int(known_id)] = file
        self.info = VoiceInfo(engine="external", voice=str(manifest.get("voice") or self.folder.name),
                              speaker=manifest.get("engine"), engine_version=manifest.get("version"))

    def synthesize(self, spoken: SpokenForm, known_id: int | None = None) -> Synthesis:
        if known_id not in self.files:
            raise ValueError(f"known_id={known_id}: not in {self.folder / MANIFEST}")
        path = self.files[known_id]
        if not path.exists() or path.is_dir():
            raise ValueError(f"known_id={known_id}: field 'files' names {path}, which does not exist")
        samples, sample_rate = soundfile.read(path, dtype="float32")
        return Synthesis(samples, sample_rate)
