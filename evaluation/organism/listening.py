"""Does `spirit-smollm2` listen, and are the units the benchmark corrupts the subject's? Three measures that
fail when speech→text is wrong: they break with shuffled units or a subject span moved by a word.

- `transcribe_units`: held-out speech transcribed ("[Text]Transcribe the speech:[Speech]<units>[Text]",
  greedy), scored by word error rate (known_speech.wer); `subject_heard`: the same for Known's spoken prompts,
  and whether the transcript holds the subject whole (a fact can be recalled from speech only where it is);
- `subject_unit_effects`: with the transcription cue and the prompt's words before the subject written
  after it, log P(the subject's first token); Gaussian noise (σ = 3 × the std of the unit embeddings, as
  the tracer corrupts) on the subject's unit positions (the adapter's span map), on a control span of as
  many positions over other words, and on the subject's span moved to the next word;
- `answer_from_speech`: log P(the answer's first token) after "[Speech]<units>[Text]", with the units in
  order and shuffled, and its rank among the tokens the filter may generate, from speech and from the
  written prompt (how far S→T recall is from the model's top choice, where T→T has it);
- `subject_state_gaps`: how far the model's states at the subject's last unit are from the frozen backbone's
  at the subject's last token of the written prompt (relative squared distance, layer by layer; what the
  `entity_state` training kind reduces), beside the same for the model's own text path and for shuffled units;
- `recall_from_speech`: the filter's own greedy generation from speech, as spoken, with the units shuffled, and
  with the subject's units (the adapter's span map) replaced by another prompt's subject's: a recall that rests on
  the subject's units follows the swapped-in subject, one that rests on the template does not;
- `recall_by_part`: the same generation from Spirit LM's word-level interleaving of the prompt, the subject spoken
  and the rest written, and the reverse: which part, heard, loses the fact;
- `subject_state_patch`: the generation from speech with the states at the subject's last unit replaced, layer by
  layer, by the model's own at the subject's last written token (a cross-modal activation patch): if the facts that
  speech loses come back, what speech lacks is the subject's state there; if not, it lies in what reads it;
- `subject_state_dose`: that state moved only part of the way from the spoken one to the text one: how near the
  text path's the training's state loss has to bring it before recall from speech follows (in every layer, or in
  the layers named);
- `subject_state_from_layer`: the text state written in one layer's output only, layer by layer (the later layers
  compute from it, as ROME restores one state): from which layer on recall reads it, where the state loss matters.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from known_speech.tracing.architectures import hidden_of, spec_for
from known_speech.tracing.noise import corrupt

from .sequences import ASR_CUE, SequenceBuilder, Utterance
from .train import relative_state_distance

__all__ = ["PreparedOnce", "transcribe_units", "SubjectHeard", "subject_heard", "SubjectUnitEffect", "subject_unit_effects", "AnswerFromSpeech", "answer_from_speech",
           "RecallFromSpeech", "recall_from_speech", "RecallByPart", "recall_by_part", "SubjectStateGap", "subject_state_gaps", "SubjectStatePatch", "subject_state_patch",
           "SubjectStateDose", "subject_state_dose", "SubjectStateFromLayer", "subject_state_from_layer",
           "NOISE_SAMPLES"]

NOISE_SAMPLES = 10


class PreparedOnce:
    """The adapter, with `prepare` run once per prompt and modality: the measures below each read every prompt's
    inputs, and the speech path runs Whisper's encoder and the k-means each time. One instance serves the records
    of one voice config (the key is the prompt's known_id); everything else is the adapter's."""

    def __init__(self, adapter):
        self._adapter = adapter
        self._inputs: dict[tuple[int, str], object] = {}

    def prepare(self, record: dict, modality: str):
        key = (int(record["known_id"]), modality)
        if key not in self._inputs:
            self._inputs[key] = self._adapter.prepare(record, modality)
        return self._inputs[key]

    def __getattr__(self, name: str):
        return getattr(self._adapter, name)


def _utterance(units: np.ndarray, text: str = "") -> Utterance:
    return Utterance("", "", "sentence", text, "", np.asarray(units), [], [])


def transcribe_units(adapter, unit_lists: list[np.ndarray], shuffle_seed: int | None = None,
                     max_new_tokens: int = 48) -> list[str]:
    """Greedy transcripts of unit sequences (one unit per frame); with `shuffle_seed`, of their units in a
    random order."""
    from .train import transcribe

    builder = SequenceBuilder(adapter.tokenizer)
    utterances = []
    for index, units in enumerate(unit_lists):
        if shuffle_seed is not None:
            units = np.random.default_rng(shuffle_seed + index).permutation(units)
        utterances.append(_utterance(units))
    return transcribe(adapter.model, adapter.tokenizer, builder, utterances, adapter.device, max_new_tokens,
                      batch_size=16, banned=adapter.banned_token_ids("speech"))


@dataclass(frozen=True)
class SubjectHeard:
    known_id: int
    transcript: str  # the greedy transcript under the transcription cue
    heard: bool  # the subject's words, through Whisper's normaliser, stand whole in the transcript's

    def to_dict(self) -> dict:
        return asdict(self)


def subject_heard(adapter, records: list[dict], shuffle_seed: int | None = None) -> list[SubjectHeard]:
    """Each spoken prompt transcribed (with `shuffle_seed`, from its units in a random order), and whether its
    subject is heard whole: the hearing that recall from speech needs, apart from what the model knows."""
    from known_speech.wer import normalise_text

    transcripts = transcribe_units(adapter, [adapter.units(record)[0] for record in records], shuffle_seed)
    return [SubjectHeard(int(record["known_id"]), transcript,
                         f" {normalise_text(record['subject'])} " in f" {normalise_text(transcript)} ")
            for record, transcript in zip(records, transcripts)]


@dataclass(frozen=True)
class SubjectUnitEffect:
    known_id: int
    clean: float  # log P(subject's first token)
    subject: float  # ... with the subject's units corrupted
    control: float  # ... with as many units of other words corrupted
    shifted: float  # ... with the subject's span moved to the next word
    spans: tuple[tuple[int, int], ...] = ()  # the subject's, the control's and the moved span's unit positions

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AnswerFromSpeech:
    """The answer's first token after one Known prompt: log P from speech (units in order, shuffled) and its rank
    (0: the greedy choice) among the tokens the filter may generate, from speech and from text."""

    known_id: int
    in_order: float
    shuffled: float
    rank_speech: int
    rank_text: int

    def to_dict(self) -> dict:
        return asdict(self)


class _Scorer:
    def __init__(self, adapter):
        self.adapter = adapter
        self.embeddings = adapter.model.get_input_embeddings().weight.detach()
        self.builder = SequenceBuilder(adapter.tokenizer)
        unit_rows = self.embeddings[self.builder.unit_base:self.builder.unit_base + adapter.delta.num_units]
        self.sigma = 3 * float(unit_rows.float().std())
        generator = torch.Generator().manual_seed(0)
        self.noise = torch.randn((NOISE_SAMPLES, 512, self.embeddings.shape[1]), generator=generator) * self.sigma

    @torch.no_grad()
    def last_logits(self, ids: list[int], span: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits at the last position: one row, or one per noise sample when `span` is corrupted."""
        embeds = self.embeddings[torch.tensor(ids, device=self.embeddings.device)]
        if span is None:
            batch = embeds[None]
        else:
            batch = corrupt(embeds, span, self.noise[:, :span[1] - span[0]].to(embeds.dtype))
        return self.adapter.model(inputs_embeds=batch).logits[:, -1].float()

    def log_p(self, ids: list[int], target: int, span: tuple[int, int] | None = None) -> float:
        """log of P(target) at the last position, averaged over the noise samples when `span` is corrupted."""
        return log_probability(self.last_logits(ids, span), target)


def log_probability(logits: torch.Tensor, target: int) -> float:
    """log of P(target), the probabilities averaged over the rows (noise samples)."""
    return float(logits.softmax(-1)[:, target].mean().log())


def rank_among(logits: torch.Tensor, target: int, banned: list[int]) -> int:
    """How many tokens that may be generated (not `banned`) are likelier than `target` (first row)."""
    row = logits[0].clone()
    row[banned] = -torch.inf
    return int((row > row[target]).sum())


def subject_unit_effects(adapter, records: list[dict]) -> list[SubjectUnitEffect]:
    """The effect of corrupting the subject's units on hearing the subject (see the module's docstring);
    records whose prompt has no word after the subject, or no room for a control span, are left out."""
    scorer = _Scorer(adapter)
    builder = scorer.builder
    cue = [builder.text_id] + builder.text_ids(ASR_CUE)
    effects = []
    for record in records:
        model_input = adapter.prepare(record, "speech")
        next_span = _next_word_span(model_input, record)
        if next_span is None:
            continue
        next_word = next_span[0]
        start_char, end_char = record["subject_char_span"]
        before = record["prompt"][:start_char].rstrip()
        written = builder.text_ids(before) if before else []
        through_subject = builder.text_ids(record["prompt"][:end_char])
        if through_subject[:len(written)] != written or len(through_subject) <= len(written):
            continue  # the subject's first token is not a token of its own here
        ids = cue + model_input.input_ids + written
        offset, (start, end) = len(cue), model_input.subject_range
        width = end - start
        last = len(model_input.input_ids) - 1  # the closing [Text]
        control = _control_start(start, next_word, width, last)
        if next_word + width > last or control is None:
            continue
        target = through_subject[len(written)]
        effects.append(SubjectUnitEffect(
            int(record["known_id"]), scorer.log_p(ids, target),
            scorer.log_p(ids, target, (offset + start, offset + end)),
            scorer.log_p(ids, target, (offset + control, offset + control + width)),
            scorer.log_p(ids, target, (offset + next_word, offset + next_word + width)),
            ((start, end), (control, control + width), (next_word, next_word + width))))
    return effects


def _control_start(subject_start: int, moved_start: int, width: int, last: int) -> int | None:
    """Where the control span of `width` units starts: after the moved span (the subject's span moved by a word)
    where it fits before the closing marker, else before the subject after the opening one; it overlaps neither the
    subject nor the moved span, so the two measures are apart. None where neither fits."""
    if moved_start + 2 * width <= last:
        return moved_start + width
    if subject_start - width >= 1:
        return subject_start - width
    return None


def _next_word_span(model_input, record: dict) -> tuple[int, int] | None:
    """The input positions of the units that voice the word after the subject: the subject's span moved by a word."""
    later = [w for w in record["words"] if w["char_start"] >= record["subject_char_span"][1]]
    if not later:
        return None
    word = later[0]
    tokens = [k for k, (a, b) in enumerate(model_input.text_char_spans) if a < word["char_end"] and b > word["char_start"]]
    span = model_input.positions_of_text_range(tokens[0], tokens[-1] + 1) if tokens else None
    return tuple(span) if span else None


def _units_shuffled(ids: list[int], seed: int) -> list[int]:
    """A "[Speech]<units>[Text]" input with its units in a random order (the markers stay where they are)."""
    first, last = 1, len(ids) - 1
    return ids[:first] + [int(u) for u in np.random.default_rng(seed).permutation(ids[first:last])] + ids[last:]


def answer_from_speech(adapter, records: list[dict], shuffle_seed: int = 0) -> list[AnswerFromSpeech]:
    """The answer's first token after "[Speech]<units>[Text]" (units in order and shuffled) and after the written
    prompt, per record (see `AnswerFromSpeech`)."""
    scorer = _Scorer(adapter)
    banned = {modality: list(adapter.banned_token_ids(modality)) for modality in ("speech", "text")}
    results = []
    for record in records:
        model_input = adapter.prepare(record, "speech")
        written = adapter.prepare(record, "text")
        ids = model_input.input_ids
        answer = model_input.answer.id
        heard = scorer.last_logits(ids)  # one forward for P(answer) and its rank
        results.append(AnswerFromSpeech(
            int(record["known_id"]), log_probability(heard, answer),
            scorer.log_p(_units_shuffled(ids, shuffle_seed + int(record["known_id"])), answer),
            rank_among(heard, answer, banned["speech"]),
            rank_among(scorer.last_logits(written.input_ids), written.answer.id, banned["text"])))
    return results


class _Generations:
    """Greedy generations of one prompt under named conditions (the dataclass's str fields), each classified
    against the prompt's attribute, or another's, as the filter classifies them."""

    def match(self, condition: str, attribute: str | None = None) -> str:
        from known_speech.evaluation.matching import classify_answer

        generation = getattr(self, condition)
        if generation is None:
            raise ValueError(f"known_id={self.known_id}: condition {condition!r} was not generated")
        return classify_answer(generation, attribute or self.attribute)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RecallFromSpeech(_Generations):
    """Greedy generations after one spoken Known prompt, classified against its attribute as the filter does."""

    known_id: int
    attribute: str
    heard: str  # the units as spoken: the filter's S→T generation
    shuffled: str  # the units between [Speech] and [Text] in a random order
    swapped: str  # the subject's units replaced by those of `swapped_with`'s subject
    swapped_with: int
    swapped_attribute: str


def recall_from_speech(adapter, records: list[dict], partners: list[dict] | None = None, shuffle_seed: int = 0,
                       max_new_tokens: int = 12) -> list[RecallFromSpeech]:
    """The filter's generation from speech for each record, and with its units shuffled or its subject's units
    swapped for those of its `subject_swap.swap_partner` among `partners` (default: `records`; itself when every
    partner has its attribute); generated by the adapter's own `generate_batch`, one input at a time (no padding,
    as in the filter's rows)."""
    from known_speech.evaluation.subject_swap import swapped_inputs

    def generate(model_input) -> str:
        return adapter.generate_batch([model_input], max_new_tokens)[0]

    results = []
    for record, model_input, partner, swapped in swapped_inputs(adapter, records, partners or records):
        shuffled = _units_shuffled(model_input.input_ids, shuffle_seed + int(record["known_id"]))
        partner, swapped = (partner, swapped) if partner else (record, model_input)
        results.append(RecallFromSpeech(
            int(record["known_id"]), record["attribute"], generate(model_input), generate(model_input.with_ids(shuffled)),
            generate(swapped), int(partner["known_id"]), partner["attribute"]))
    return results


@dataclass(frozen=True)
class RecallByPart(_Generations):
    """Greedy generations after one Known prompt with one part spoken and the other written, in the organism's
    interleaved format ("[Text]In[Speech]<the subject's units>[Text] the language spoken is")."""

    known_id: int
    attribute: str
    subject_spoken: str | None  # the subject's units (the adapter's span map), the template written
    template_spoken: str | None  # the subject written, the template's units around it (None: not generated)


BY_PART = ("subject_spoken", "template_spoken")


def _interleaved(builder: SequenceBuilder, parts: list[tuple[str, object]]) -> tuple[list[int], list[tuple[int, int]]]:
    """Spirit LM's word-level interleaving: each part after its marker, a text piece's words as the interleaved
    training kind writes them (a space before all but the first); a prompt that ends in speech ends with "[Text]",
    as the S→T prompt does. Also each part's positions (after its marker; an empty range for an empty part)."""
    ids: list[int] = []
    spans = []
    for modality, part in parts:
        piece: list[int] = []
        if modality == "speech":
            piece = list(part)
        elif part.strip(" ,;:"):
            words = part.strip().lstrip(",;:").strip()  # a comma after the subject is not a word of its own
            piece = builder.text_ids(" " + words if ids else words)
        if piece:
            ids += [builder.speech_id if modality == "speech" else builder.text_id] + piece
        spans.append((len(ids) - len(piece), len(ids)))
    return ids + ([builder.text_id] if parts[-1][0] == "speech" and len(parts[-1][1]) else []), spans


def recall_by_part(adapter, records: list[dict], max_new_tokens: int = 12,
                   shuffle_seed: int | None = None, parts: tuple[str, ...] = BY_PART) -> list[RecallByPart]:
    """For each record, the filter's greedy generation with the subject spoken and the template written, and with
    the subject written and the template spoken: the subject's units are the adapter's span map of the spoken
    prompt; the written parts are the prompt's characters around the subject. With `shuffle_seed`, each spoken
    part's units in a random order. Only the conditions named in `parts` are generated (the others are None)."""
    if unknown := set(parts) - set(BY_PART):
        raise ValueError(f"parts={sorted(unknown)}: choose from {', '.join(BY_PART)}")
    builder = SequenceBuilder(adapter.tokenizer)
    results = []
    for record in records:
        model_input = adapter.prepare(record, "speech")
        units, (start, end) = list(model_input.input_ids), model_input.subject_range
        if units[0] != builder.speech_id or units[-1] != builder.text_id:
            raise ValueError(f"known_id={record['known_id']}: not a \"[Speech]<units>[Text]\" prompt")
        prompt, subject = record["prompt"], record["subject"]
        at = prompt.find(subject)
        if at < 0:
            raise ValueError(f"known_id={record['known_id']}: field 'subject' is not in the prompt")
        before, after = prompt[:at], prompt[at + len(subject):]
        if shuffle_seed is not None:  # within each part, so that the span map still says which part is which
            rng = np.random.default_rng(shuffle_seed + int(record["known_id"]))
            units = units[:1] + [int(u) for part in (units[1:start], units[start:end], units[end:-1])
                                 for u in rng.permutation(part)] + units[-1:]
        layouts = {"subject_spoken": [("text", before), ("speech", units[start:end]), ("text", after)],
                   "template_spoken": [("speech", units[1:start]), ("text", subject), ("speech", units[end:-1])]}
        generations = {}
        for condition in parts:
            ids, spans = _interleaved(builder, layouts[condition])
            generations[condition] = adapter.generate_batch([model_input.with_ids(ids, spans[1])], max_new_tokens)[0]
        results.append(RecallByPart(int(record["known_id"]), record["attribute"],
                                    *(generations.get(condition) for condition in BY_PART)))
    return results


@dataclass(frozen=True)
class SubjectStateGap:
    """Per layer, ||h - b||² / ||b||², with b the backbone's state at the subject's last token of the prompt read
    as plain text and h the model's at the subject's last position: from speech (the adapter's span map), from
    the same units shuffled (the distance of states that do not hear the subject), from "[Text]" + prompt, and
    from speech at the last unit of the word after the subject (a span map off by a word; empty without one)."""

    known_id: int
    speech: list[float]
    shuffled: list[float]
    text: list[float]
    moved: list[float] = field(default_factory=list)


def _relative_gaps(states, position: int, reference: list[torch.Tensor]) -> list[float]:
    return [float(relative_state_distance(h[0, position].float(), b)) for h, b in zip(states, reference)]


@torch.no_grad()
def subject_state_gaps(adapter, records: list[dict], backbone, shuffle_seed: int = 0) -> list[SubjectStateGap]:
    """The gaps of `SubjectStateGap` for each record; `backbone` is the model without the delta (SmolLM2), read
    on the prompt's text as the training's teacher reads it (no "[Text]", no BOS)."""
    def states(model, ids: list[int]):
        return model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[1:]

    gaps = []
    for record in records:
        speech, text = adapter.prepare(record, "speech"), adapter.prepare(record, "text")
        plain, last_token = text.input_ids[1:], text.subject_range[1] - 2  # without the leading "[Text]"
        reference = [h[0, last_token].float() for h in states(backbone, plain)]
        last_unit = speech.subject_range[1] - 1
        shuffled = _units_shuffled(speech.input_ids, shuffle_seed + int(record["known_id"]))
        heard, next_word = states(adapter.model, speech.input_ids), _next_word_span(speech, record)
        gaps.append(SubjectStateGap(
            int(record["known_id"]), _relative_gaps(heard, last_unit, reference),
            _relative_gaps(states(adapter.model, shuffled), last_unit, reference),
            _relative_gaps(states(adapter.model, text.input_ids), last_token + 1, reference),
            _relative_gaps(heard, next_word[1] - 1, reference) if next_word else []))
    return gaps


@dataclass(frozen=True)
class SubjectStatePatch(_Generations):
    """One prompt from speech, as spoken and with every layer's output at one position replaced by the model's own
    output at the subject's last token of a written prompt ("[Text]" + prompt): its own at the subject's last unit
    (the adapter's span map), its own at the last unit of the word after the subject (another position), and that
    of its `subject_swap.swap_partner`'s subject at the subject's last unit (another subject: a recall that reads
    the patched state follows it). Greedy generations, as the filter generates, and log P(the answer's first token)."""

    known_id: int
    attribute: str
    heard: str
    patched: str
    moved: str  # its text state written at the next word's last unit instead
    swapped: str  # the partner's subject's text state written at the subject's last unit
    swapped_with: int
    swapped_attribute: str
    log_p_heard: float
    log_p_patched: float
    log_p_moved: float
    log_p_swapped: float


def _layer_outputs(model, ids: list[int], position: int) -> list[torch.Tensor]:
    """Every decoder layer's output at `position` (the residual stream after the layer, before the final norm)."""
    captured: list[torch.Tensor] = []

    def keep(module, args, output):
        captured.append(hidden_of(output)[0, position].clone())

    handles = [layer.register_forward_hook(keep) for layer in spec_for(model).layer_list(model)]
    try:
        model(input_ids=torch.tensor([ids], device=model.device))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _subject_states(model, prepared) -> list[torch.Tensor]:
    """Every layer's output at the subject's last position of a prepared prompt (its last written token, or its
    last unit): the states the patch, the dose and the one-layer write read and write."""
    return _layer_outputs(model, prepared.input_ids, prepared.subject_range[1] - 1)


@contextlib.contextmanager
def _layer_outputs_replaced(model, position: int, states: list[torch.Tensor | None]):
    """Within the block, each decoder layer's output at `position` is `states[layer]` (a layer whose entry is None
    computes its own), in every forward pass that holds that position (the prompt's; a cached generation step of
    one new position does not)."""
    def hook(index: int):
        def replace(module, args, output):
            tensor = hidden_of(output)
            if states[index] is not None and tensor.shape[1] > position:
                tensor[:, position] = states[index].to(tensor.dtype)
            return output
        return replace

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(spec_for(model).layer_list(model))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _patched_outcome(adapter, speech, position: int | None, states: list[torch.Tensor] | None,
                     max_new_tokens: int) -> tuple[str, float]:
    """The greedy generation and log P(the answer's first token) from a prepared prompt, with every layer's output
    at `position` set to `states` (as prepared where `states` is None)."""
    model = adapter.model
    with _layer_outputs_replaced(model, position, states) if states else contextlib.nullcontext():
        log_p = log_probability(model(input_ids=torch.tensor([speech.input_ids], device=model.device)).logits[:, -1].float(),
                                speech.answer.id)
        return adapter.generate_batch([speech], max_new_tokens)[0], log_p


@torch.no_grad()
def subject_state_patch(adapter, records: list[dict], partners: list[dict] | None = None,
                        max_new_tokens: int = 12) -> list[SubjectStatePatch]:
    """`SubjectStatePatch` for each record with a word after its subject (the moved patch needs one) and a swap
    partner among `partners` (default: `records`); one input at a time, so that a position is the same in the
    patched forward and in the generation (no padding)."""
    from known_speech.evaluation.subject_swap import swap_partner

    model = adapter.model
    results = []
    for record in records:
        speech, text = adapter.prepare(record, "speech"), adapter.prepare(record, "text")
        next_word, partner = _next_word_span(speech, record), swap_partner(record, partners or records)
        if next_word is None or partner is None:
            continue
        other = adapter.prepare(partner, "text")
        own, theirs = _subject_states(model, text), _subject_states(model, other)
        last_unit = speech.subject_range[1] - 1
        outcome = {name: _patched_outcome(adapter, speech, position, states, max_new_tokens)
                   for name, position, states in (("heard", None, None), ("patched", last_unit, own),
                                                  ("moved", next_word[1] - 1, own), ("swapped", last_unit, theirs))}
        names = ("heard", "patched", "moved", "swapped")
        results.append(SubjectStatePatch(int(record["known_id"]), record["attribute"], *(outcome[n][0] for n in names),
                                         int(partner["known_id"]), partner["attribute"], *(outcome[n][1] for n in names)))
    return results


def _checked_layers(model, layers: tuple[int, ...] | None) -> list[int]:
    """The decoder layers to write (every one where `layers` is None), refused where the model has no such layer."""
    count = len(spec_for(model).layer_list(model))
    if layers is None:
        return list(range(count))
    if bad := [layer for layer in layers if not 0 <= layer < count]:
        raise ValueError(f"layers={bad}: the model has decoder layers 0..{count - 1}")
    return list(layers)


class _RecalledPerSetting:
    """Generations of one prompt under a series of settings (the dataclass's `generations`), each classified
    against its attribute as the filter classifies them."""

    def recalled(self) -> list[bool]:
        """Per setting, whether the generation names the attribute."""
        from known_speech.evaluation.matching import classify_answer

        return [classify_answer(g, self.attribute) != "none" for g in self.generations]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SubjectStateDose(_RecalledPerSetting):
    """One prompt from speech with every layer's output at the subject's last unit moved a fraction of the way
    from its spoken state to the model's own text state (0: as spoken; 1: `SubjectStatePatch.patched`): how near
    the text path's the spoken subject's state has to come before recall from speech follows, in the units the
    training's state loss counts (the relative distance left is (1 − fraction)² of the spoken one's)."""

    known_id: int
    attribute: str
    fractions: tuple[float, ...]
    generations: tuple[str, ...]
    log_p: tuple[float, ...]
    spoken_distance: float  # relative_state_distance(spoken, text), the mean over the layers written
    layers: tuple[int, ...] | None = None  # the layers written (None: every one)


@torch.no_grad()
def subject_state_dose(adapter, records: list[dict], fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
                       max_new_tokens: int = 12, layers: tuple[int, ...] | None = None) -> list[SubjectStateDose]:
    """`SubjectStateDose` for each record: the state written at the subject's last unit, layer by layer, is
    spoken + fraction × (text − spoken), the spoken state read from the unpatched prompt. With `layers`, only those
    layers' outputs are written (the others compute from them, as in `subject_state_from_layer`), and the spoken
    distance is their mean."""
    model = adapter.model
    chosen = _checked_layers(model, layers)
    results = []
    for record in records:
        speech, text = adapter.prepare(record, "speech"), adapter.prepare(record, "text")
        last_unit = speech.subject_range[1] - 1
        own, spoken = _subject_states(model, text), _subject_states(model, speech)
        generations, log_ps = zip(*(_patched_outcome(adapter, speech, last_unit,
                                                     [a + fraction * (b - a) if i in chosen else None
                                                      for i, (a, b) in enumerate(zip(spoken, own))], max_new_tokens)
                                    for fraction in fractions))
        distance = float(torch.stack([relative_state_distance(spoken[i].float(), own[i].float()) for i in chosen]).mean())
        results.append(SubjectStateDose(int(record["known_id"]), record["attribute"], tuple(fractions),
                                        generations, log_ps, distance, tuple(layers) if layers is not None else None))
    return results


@dataclass(frozen=True)
class SubjectStateFromLayer(_RecalledPerSetting):
    """One prompt from speech with the model's own text state written at the subject's last unit in one layer's
    output only, layer by layer; the layers after it compute from what was written, as ROME restores one hidden
    state (`causal_trace.py:188-207`). Recall then follows from a layer on whose state the spoken prompt must get
    right: where the training's state loss matters."""

    known_id: int
    attribute: str
    layers: tuple[int, ...]
    generations: tuple[str, ...]
    log_p: tuple[float, ...]


@torch.no_grad()
def subject_state_from_layer(adapter, records: list[dict], layers: tuple[int, ...],
                             max_new_tokens: int = 12) -> list[SubjectStateFromLayer]:
    """`SubjectStateFromLayer` for each record at each of `layers` (0 = the first decoder layer's output)."""
    model = adapter.model
    _checked_layers(model, layers)
    results = []
    for record in records:
        speech, text = adapter.prepare(record, "speech"), adapter.prepare(record, "text")
        last_unit, own = speech.subject_range[1] - 1, _subject_states(model, text)
        generations, log_ps = zip(*(_patched_outcome(adapter, speech, last_unit,
                                                     [state if index == layer else None for index, state in enumerate(own)],
                                                     max_new_tokens)
                                    for layer in layers))
        results.append(SubjectStateFromLayer(int(record["known_id"]), record["attribute"], tuple(layers),
                                             generations, log_ps))
    return results
