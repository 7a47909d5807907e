"""The continuous organism's training sequences and losses (see continuous_train): per utterance the backbone's ids of
its words and of its greedy continuation, and the student's ids in Voxtral's chat format, tekken's order; a batch
holds one kind, its audio positions filled from the frozen encoder's outputs through the projector."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .continuous import AUDIO_POSITIONS, CHAT, PAD_ID

__all__ = ["Sequence", "Batch", "Batches", "kl_loss", "transcribe_loss", "student_ids"]

HELD_OUT_BATCHES = 3


@dataclass(frozen=True)
class Sequence:
    index: int  # the utterance's place in the bundle (its encoder outputs' row)
    teacher: list[int]  # backbone ids: the words, then the continuation but its last token
    teacher_positions: list[int]  # where the teacher predicts each continuation token
    student: list[int]  # tekken ids, [AUDIO] where the audio goes
    student_positions: list[int]  # where the student predicts each target
    targets: list[int]  # tekken ids the student should give (transcription); the continuation's for distillation


@dataclass
class Batch:
    kind: str
    sequences: list[Sequence]


def student_ids(chat: dict, audio_positions: int, words: list[int] | None, instruction: list[int] = ()) -> list[int]:
    """Voxtral's chat encoding of one user turn: the audio (and an instruction after it), or the written words."""
    if words is None:
        return [chat["bos"], chat["inst"], chat["begin_audio"]] + [chat["audio"]] * audio_positions + list(instruction) \
            + [chat["end_inst"]]
    return [chat["bos"], chat["inst"]] + list(words) + [chat["end_inst"]]


class Batches:
    """Sequences of every utterance by kind and split, drawn in batches by the mix."""

    def __init__(self, bundle, tokenizer, vocabulary, continuations: list[list[int]], options, instruction: str):
        self.options, self.vocabulary, self.tokenizer = options, vocabulary, tokenizer
        self.chat, self.audio_positions = CHAT, AUDIO_POSITIONS
        instruction_ids = vocabulary.tekken(tokenizer(instruction).input_ids)
        self.sequences: dict[tuple[str, str], list[Sequence]] = {}
        for index, (utterance, continuation) in enumerate(zip(bundle.utterances, continuations)):
            words = tokenizer(utterance["text"]).input_ids
            reply = vocabulary.tekken(continuation, first=True)
            written = vocabulary.tekken(words)
            if len(reply) != len(continuation) or len(written) != len(words):
                continue  # a token tekken's vocabulary lacks: the positions would not line up
            teacher = words + continuation[:-1]
            teacher_positions = list(range(len(words) - 1, len(teacher)))
            for kind, prompt in (("speech_distill", student_ids(CHAT, AUDIO_POSITIONS, None)),
                                 ("text_distill", student_ids(CHAT, AUDIO_POSITIONS, written))):
                self._add(kind, utterance["split"], Sequence(index, teacher, teacher_positions, prompt + reply[:-1],
                                                             list(range(len(prompt) - 1, len(prompt) - 1 + len(reply))),
                                                             reply))
            prompt = student_ids(CHAT, AUDIO_POSITIONS, None, instruction_ids)
            targets = written + [CHAT["eos"]]
            self._add("transcribe", utterance["split"], Sequence(index, [], [], prompt + targets[:-1],
                                                                 list(range(len(prompt) - 1, len(prompt) - 1 + len(targets))),
                                                                 targets))
        self.random = random.Random(options.seed)

    def _add(self, kind: str, split: str, sequence: Sequence) -> None:
        self.sequences.setdefault((kind, split), []).append(sequence)

    def draw(self, split: str) -> tuple[str, Batch]:
        kinds = [k for k in self.options.mix if self.sequences.get((k, split))]
        kind = self.random.choices(kinds, weights=[self.options.mix[k] for k in kinds])[0]
        chosen = self.random.sample(self.sequences[(kind, split)], min(self.options.batch_size,
                                                                         len(self.sequences[(kind, split)])))
        return kind, Batch(kind, chosen)

    def held_out(self, kind: str) -> list[Batch]:
        sequences = self.sequences.get((kind, "test"), [])[:HELD_OUT_BATCHES * self.options.batch_size]
        size = self.options.batch_size
        return [Batch(kind, sequences[i:i + size]) for i in range(0, len(sequences), size)]

    @torch.no_grad()
    def transcripts(self, student, encoded: torch.Tensor, tokens: int, limit: int = 96) -> list[dict]:
        """Greedy transcripts of held-out utterances (the instruction's prompt), decoded to text: the held-out WER is
        computed from them where jiwer is installed."""
        student.eval()
        held = self.sequences.get(("transcribe", "test"), [])[:limit]
        back = {int(t): b for b, t in enumerate(self.vocabulary.plain.tolist()) if t >= 0}
        results = []
        for start in range(0, len(held), 32):
            chunk = held[start:start + 32]
            rows = [s.student[:s.student_positions[0] + 1] for s in chunk]
            written: list[list[int]] = [[] for _ in chunk]
            for _ in range(tokens):
                logits = _student_logits(student, rows, [[len(r) - 1] for r in rows], [s.index for s in chunk], encoded,
                                         self.chat)
                for k, token in enumerate(logits[:, 0].argmax(-1).tolist()):
                    rows[k].append(token)
                    if self.chat["eos"] not in written[k]:
                        written[k].append(token)
            for sequence, ids in zip(chunk, written):
                text = self.tokenizer.decode([back[t] for t in ids if t in back])
                results.append({"index": sequence.index, "transcript": text})
        student.train()
        return results


def _student_logits(student, rows: list[list[int]], positions: list[list[int]], indices: list[int],
                    encoded: torch.Tensor, chat: dict) -> torch.Tensor:
    """(batch, positions, tekken vocab) logits at the given positions; the [AUDIO] positions hold the projector's
    output of the utterance's encoder frames, four stacked per position, as Voxtral's forward merges them."""
    inner = student.base_model.model if hasattr(student, "base_model") else student
    device = encoded.device
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for k, row in enumerate(rows):
        ids[k, :len(row)] = torch.tensor(row, device=device)
        mask[k, :len(row)] = 1
    embeds = inner.get_input_embeddings()(ids)
    audio = ids == chat["audio"]
    if audio.any():
        frames = encoded[torch.tensor(indices, device=device)].float()
        stacked = frames.reshape(len(rows), -1, inner.config.audio_config.intermediate_size)
        projected = inner.model.multi_modal_projector(stacked.to(embeds.dtype))
        embeds = embeds.masked_scatter(audio[..., None], projected[audio.sum(1) > 0].to(embeds.dtype))
    hidden = inner.model.language_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    widest = max(len(p) for p in positions)  # shorter lists repeat their last position (callers cut them)
    picked = torch.stack([hidden[k, torch.tensor(p + p[-1:] * (widest - len(p)), device=device)]
                          for k, p in enumerate(positions)])
    return inner.lm_head(picked).float()


def kl_loss(student, teacher, batch: Batch, encoded: torch.Tensor, vocabulary) -> torch.Tensor:
    """Forward KL from the backbone's next-token distributions over the continuation (in tekken's order, the first
    position's moved to the reply's words) to the student's, mean over positions."""
    device = encoded.device
    length = max(len(s.teacher) for s in batch.sequences)
    ids = torch.full((len(batch.sequences), length), 0, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for k, s in enumerate(batch.sequences):
        ids[k, :len(s.teacher)] = torch.tensor(s.teacher, device=device)
        mask[k, :len(s.teacher)] = 1
    with torch.no_grad():
        logits = teacher(input_ids=ids, attention_mask=mask).logits.float()
        probabilities = torch.stack([logits[k, s.teacher_positions] for k, s in enumerate(batch.sequences)]).softmax(-1)
        target = torch.cat([vocabulary.distribution(probabilities[:, :1], first=True),
                            vocabulary.distribution(probabilities[:, 1:], first=False)], dim=1)
    student_log = _student_logits(student, [s.student for s in batch.sequences],
                                  [s.student_positions for s in batch.sequences], [s.index for s in batch.sequences],
                                  encoded, CHAT).log_softmax(-1)
    return (torch.xlogy(target, target) - target * student_log).sum(-1).mean()


def transcribe_loss(student, teacher, batch: Batch, encoded: torch.Tensor, vocabulary) -> torch.Tensor:
    """Cross-entropy of the written words and </s> after the audio and the instruction."""
    logits = _student_logits(student, [s.student for s in batch.sequences], [s.student_positions for s in batch.sequences],
                             [s.index for s in batch.sequences], encoded, CHAT)
    targets = torch.tensor([s.targets for s in batch.sequences], device=encoded.device) \
        if len({len(s.targets) for s in batch.sequences}) == 1 else None
    if targets is not None:
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    losses = [torch.nn.functional.cross_entropy(logits[k, :len(s.targets)], torch.tensor(s.targets, device=encoded.device))
              for k, s in enumerate(batch.sequences)]
    return torch.stack(losses).mean()
