"""spirit-smollm2, the speech LM trained here, on CPU with the shipped delta: it loads only as shipped (by
hash), its inputs are Spirit LM's formats with the subject where its units are, and it listens: held-out
speech is transcribed, facts are recalled from speech, and corrupting the subject's units matters more
than corrupting other units. Shuffled units or a subject span moved by a word break these."""

import json
import shutil

import numpy as np
import pytest
from scipy.stats import ttest_rel

from known_speech.builders.corpus_text import FORTUNES_DIR
from known_speech.evaluation.organism.delta import MANIFEST, OrganismDelta
from known_speech.settings import DEFAULT_VOICE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def delta_copy(tmp_path_factory):
    source = OrganismDelta.resolve("spirit-smollm2").folder
    target = tmp_path_factory.mktemp("delta") / "spirit-smollm2"
    shutil.copytree(source, target)
    return target


def test_the_shipped_delta_is_small_and_hashed():
    delta = OrganismDelta.resolve("spirit-smollm2")
    size = sum(p.stat().st_size for p in delta.folder.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"the delta takes {size / 2**20:.1f} MB"
    assert delta.manifest["training"]["steps"] > 0 and delta.num_units == 500


def test_a_corrupt_or_foreign_delta_is_refused(delta_copy, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(delta_copy, corrupt)
    data = bytearray((corrupt / "adapter_model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (corrupt / "adapter_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="adapter_model.safetensors: sha256 .* corrupt"):
        OrganismDelta.resolve(str(corrupt))
    foreign = tmp_path / "foreign"
    shutil.copytree(delta_copy, foreign)
    manifest = json.loads((foreign / MANIFEST).read_text())
    manifest["backbone"]["gguf_sha256"] = "0" * 64
    (foreign / MANIFEST).write_text(json.dumps(manifest))
    from known_speech.evaluation.organism.delta import load_organism

    with pytest.raises(ValueError, match="trained on the GGUF with sha256 000000000000"):
        load_organism(str(foreign))
    with pytest.raises(ValueError, match="no organism.json"):
        OrganismDelta.resolve(str(tmp_path))


def test_training_goes_on_from_the_shipped_delta_and_refuses_another_tokenizer(delta_copy):
    """--init-from: the fresh organism with the shipped delta's LoRA and token rows loaded computes what the
    shipped organism computes (so a run goes on from it); a delta of another unit tokenizer is refused."""
    import torch

    from known_speech.evaluation.organism.bundle import Bundle
    from known_speech.evaluation.organism.delta import load_organism
    from known_speech.evaluation.organism.train import TrainOptions, _load_backbone, build_organism, warm_start

    shipped, tokenizer, delta = load_organism(str(delta_copy))
    tokens = dict(json.loads((delta_copy / "training.json").read_text())["unit_tokenizer"])
    model, fresh_tokenizer = _load_backbone("smollm2", "cpu")
    hidden = model.get_input_embeddings().weight.shape[1]
    bundle = Bundle([], [], tokens, np.zeros((delta.num_units, hidden), dtype=np.float32), {})
    model, _ = build_organism(model, fresh_tokenizer, bundle, TrainOptions("", ""))
    ids = torch.tensor([tokenizer("[Speech][Hu7][Hu300][Hu41][Text] Rome is the capital of").input_ids])
    with torch.no_grad():
        expected = shipped(ids).logits
        before = model(ids).logits
        record = warm_start(model, delta_copy, bundle)
        after = model(ids).logits
    assert (before - expected).abs().max() > 1.0  # fresh LoRA and word-based unit rows differ from the delta
    # the shipped organism has its LoRA merged into the weights, this one applies it beside them: rounding apart
    assert torch.allclose(after, expected, atol=3e-2), float((after - expected).abs().max())
    assert record["steps"] == delta.manifest["training"]["steps"] and len(record["adapter_sha256"]) == 64
    bundle.unit_tokenizer = {**tokens, "checkpoint_sha256": "f" * 64, "name": "other"}
    with pytest.raises(ValueError, match="--init-from .*unit tokenizer .* but this run's is other"):
        warm_start(model, delta_copy, bundle)


VOICE = "piper-en_US-joe-medium"
# Known prompts whose subject has a word after it (the shifted span and the control need one)
LISTENING_IDS = list(range(0, 40))


@pytest.fixture(scope="module")
def organism():
    from known_speech.evaluation.adapter import adapter_class

    return adapter_class("spirit-smollm2")("spirit-smollm2")


@pytest.fixture(scope="module")
def listening_rows(tmp_path_factory, known_records):
    """The first 40 Known prompts as a real Piper + Whisper build (the dataset's own rows)."""
    from datasets import load_dataset

    from known_speech.builders.build import build_dataset

    folder = tmp_path_factory.mktemp("listening")
    source = folder / "source.json"
    source.write_text(json.dumps([r.to_dict() for r in known_records[:len(LISTENING_IDS)]]), encoding="utf-8")
    build_dataset(folder / "ds", source=str(source), workers=2)
    return list(load_dataset(str(folder / "ds"), VOICE, split="train"))


def test_inputs_are_spirit_lm_formats_with_the_subject_on_its_units(organism, listening_rows):
    """"[Text]" + prompt and "[Speech]" + de-duplicated unit tokens + "[Text]", no BOS; the subject's
    positions are exactly the unit runs that overlap its frames at 25 Hz (a golden computation)."""
    from known_speech.audio import waveform_of
    from known_speech.spans import frame_span
    from known_speech.units import deduplicate

    row = next(r for r in listening_rows if r["known_id"] == 21)
    text = organism.prepare(row, "text")
    assert text.prompt_text == "[Text]" + row["prompt"] and not text.bos
    assert organism.tokenizer.convert_ids_to_tokens(text.input_ids[:2]) == ["[Text]", "The"]
    speech = organism.prepare(row, "speech")
    units = organism.speech_tokenizer.encode(waveform_of(row["audio"]))
    dedup, starts = deduplicate(units)
    unit_base = organism.tokenizer.convert_tokens_to_ids("[Hu0]")
    assert speech.input_ids == ([organism.tokenizer.convert_tokens_to_ids("[Speech]")] + [unit_base + int(u) for u in dedup]
                                + [organism.tokenizer.convert_tokens_to_ids("[Text]")])
    first, last = frame_span(*row["subject_time_span"], 25.0)
    ends = list(starts[1:]) + [units.size]
    golden = [1 + k for k, (a, b) in enumerate(zip(starts, ends)) if a < last and b > first]
    assert list(range(*speech.subject_range)) == golden
    assert speech.metadata["units"]["tokenizer"] == "whisper-tiny.en-own-L4-25hz-k500"
    assert set(organism.banned_token_ids("speech")) >= {unit_base, unit_base + 499,
                                                        organism.tokenizer.convert_tokens_to_ids("[Text]")}


def test_the_entity_state_pair_is_the_tracers_last_subject_token(organism, listening_rows):
    """Training's entity_state pair, built from a spoken Known prompt as the corpus's name sentences are,
    points at the position the adapter (and so the tracer) takes as the subject's last unit, and at the last
    subject token of the text the backbone reads: the state the loss aligns is the one tracing corrupts."""
    from known_speech.audio import waveform_of
    from known_speech.evaluation.organism.sequences import SequenceBuilder, Utterance

    builder = SequenceBuilder(organism.tokenizer)
    for row in [r for r in listening_rows if r["known_id"] in (0, 7, 21, 33)]:
        units = np.asarray(organism.speech_tokenizer.encode(waveform_of(row["audio"])))
        utterance = Utterance("u", "s", "sentence", row["prompt"], "", units,
                              [(w["char_start"], w["char_end"]) for w in row["words"]],
                              [(w["start_s"], w["end_s"]) for w in row["words"]], tuple(row["subject_char_span"]))
        sequence = builder.entity_state(utterance, 25.0)
        speech = organism.prepare(row, "speech")
        assert sequence.ids == speech.input_ids[:-1]  # the S→T prompt without its closing [Text]
        (own, theirs), = sequence.state_pairs
        assert own == speech.subject_range[1] - 1
        text = organism.prepare(row, "text")  # "[Text]" + prompt: one token before the backbone's
        assert sequence.teacher_ids == text.input_ids[1:] and theirs == text.subject_range[1] - 2


def test_the_subjects_state_is_measured_against_the_backbones(organism, listening_rows):
    """subject_state_gaps on Known's first 40 spoken prompts: the organism's text path stays near the backbone's
    subject state (LoRA moved it a little; 0.25 over the first 100), its state from speech is farther (run 9: 0.54
    here in the reference build; run 7: 1.04), and nearer than the same units shuffled give (run 9: by 0.20 here,
    per-prompt sd 0.18; 0.19 [0.15, 0.23] over the first 100) or than the state at the last unit of the word after
    the subject (a span map off by a word; run 9: by 0.20 here, sd 0.19). Run 7, trained without entity_state,
    fails both: by −0.02 and 0.00 on these 40. Four prompts were too few: one fresh build gave 0.04 for the moved
    span on them. The pair it reads is the one the entity_state test pins."""
    from known_speech.evaluation.organism.listening import subject_state_gaps
    from known_speech.loading import load_causal_lm

    gaps = subject_state_gaps(organism, listening_rows, load_causal_lm("smollm2")[0])
    assert [g.known_id for g in gaps] == [int(r["known_id"]) for r in listening_rows]
    assert all(len(g.speech) == 30 for g in gaps)
    text, speech = np.mean([g.text for g in gaps]), np.mean([g.speech for g in gaps])
    shuffled = np.mean([np.mean(g.shuffled) - np.mean(g.speech) for g in gaps])
    moved = np.mean([np.mean(g.moved) - np.mean(g.speech) for g in gaps if g.moved])
    print(f"subject's state: text {text:.3f}, speech {speech:.3f}, units shuffled +{shuffled:.3f}, "
          f"at the next word's last unit +{moved:.3f} ({sum(bool(g.moved) for g in gaps)} prompts)")
    assert 0.05 < text < 0.4 < speech, (text, speech)
    assert shuffled > 0.1, (speech, shuffled)
    assert moved > 0.1, (speech, moved)  # a span map off by a word reads a farther state


def test_a_text_state_patched_at_the_subjects_last_unit_is_read_from_there(organism, listening_rows):
    """subject_state_patch: the patch writes every layer's output at the subject's last unit and nothing before it
    (the state read back there is the text path's, the one before it the speech's own), and what comes after
    reads it: on Known's first 12 spoken prompts, P(the answer) rises with the subject's own text state there and
    falls with another subject's, its swap partner's (run 9: log P +2.23 and −0.63 against as spoken; over the 84
    facts it recalls from text, +2.18 and −1.18, BENCHMARKS.md). A patch that missed the layers' outputs (written
    to a copy, or after the final norm) fails the first assertions; a readout that ignored what lies at that
    position would leave the own and the other subject's state alike."""
    import torch

    from known_speech.evaluation.organism.listening import (_layer_outputs, _layer_outputs_replaced,
                                                            subject_state_dose, subject_state_from_layer,
                                                            subject_state_patch)

    row = listening_rows[0]
    speech, text = organism.prepare(row, "speech"), organism.prepare(row, "text")
    own, last_unit = _layer_outputs(organism.model, text.input_ids, text.subject_range[1] - 1), speech.subject_range[1] - 1
    with _layer_outputs_replaced(organism.model, last_unit, own):
        patched = _layer_outputs(organism.model, speech.input_ids, last_unit)
        before_patched = _layer_outputs(organism.model, speech.input_ids, last_unit - 1)
    assert all(torch.equal(a, b) for a, b in zip(patched, own))
    assert all(torch.equal(a, b) for a, b in zip(before_patched, _layer_outputs(organism.model, speech.input_ids, last_unit - 1)))

    patches = subject_state_patch(organism, listening_rows[:12], partners=listening_rows, max_new_tokens=2)
    assert len(patches) >= 10 and all(p.swapped_with != p.known_id for p in patches)
    gain = np.mean([p.log_p_patched - p.log_p_heard for p in patches])
    other = np.mean([p.log_p_swapped - p.log_p_heard for p in patches])
    print(f"log P(answer) − as spoken: own text state {gain:+.2f}, another subject's {other:+.2f} ({len(patches)} prompts)")
    assert gain > 0.3 and gain > other + 1.0, (gain, other)

    # subject_state_dose: moved none of the way it is the prompt as spoken, all of the way the patch above; a
    # fraction applied the wrong way round, or to a copy, gives the ends apart
    doses = subject_state_dose(organism, listening_rows[:4], fractions=(0.0, 0.5, 1.0), max_new_tokens=2)
    by_id = {p.known_id: p for p in patches}
    for dose in doses:
        if dose.known_id in by_id:
            assert dose.log_p[0] == pytest.approx(by_id[dose.known_id].log_p_heard, abs=1e-4)
            assert dose.log_p[2] == pytest.approx(by_id[dose.known_id].log_p_patched, abs=1e-4)
        assert 0.05 < dose.spoken_distance < 2 and len(dose.recalled()) == 3
    assert sum(d.known_id in by_id for d in doses) >= 3

    # subject_state_from_layer: one layer's output written, the one before it as spoken; the last layer's output at
    # the subject feeds no later position, so writing only there leaves P(answer) as spoken, and the first layer's
    # does not (a write into every layer, or none, fails one of the two)
    last = len(own) - 1
    with _layer_outputs_replaced(organism.model, last_unit, [own[4] if i == 4 else None for i in range(len(own))]):
        written = _layer_outputs(organism.model, speech.input_ids, last_unit)
    spoken = _layer_outputs(organism.model, speech.input_ids, last_unit)
    assert torch.equal(written[4], own[4]) and torch.equal(written[3], spoken[3]) and not torch.equal(written[5], own[5])
    from_layer = subject_state_from_layer(organism, listening_rows[:4], layers=(0, last), max_new_tokens=2)
    checked = [(r.log_p, by_id[r.known_id].log_p_heard) for r in from_layer if r.known_id in by_id]
    assert len(checked) >= 3
    assert all(log_p[1] == pytest.approx(heard, abs=1e-4) for log_p, heard in checked), checked
    assert all(abs(log_p[0] - heard) > 1e-2 for log_p, heard in checked), checked
    # the dose at one layer, all of the way, is that layer's write
    one_layer = subject_state_dose(organism, listening_rows[:4], fractions=(1.0,), max_new_tokens=2, layers=(0,))
    assert [d.log_p[0] for d in one_layer] == pytest.approx([r.log_p[0] for r in from_layer], abs=1e-4)


def test_units_of_another_tokenizer_are_refused(organism, listening_rows):
    row = dict(listening_rows[0])
    row["speech_token_spans"] = [{**span, "units": [1, 2, 3], "units_tokenizer": "mhubert", "units_quantizer": "linear",
                                  "units_checkpoint_sha256": "f" * 64} for span in row["speech_token_spans"]]
    with pytest.raises(ValueError, match="made by mhubert .* reads units of whisper-tiny.en"):
        organism.prepare(row, "speech")


def test_held_out_speech_is_transcribed_and_shuffled_units_are_not(organism, known_records):
    """32 fortunes of the corpus's held-out split, spoken now by the real Piper voice (its sampling noise differs
    each session): WER within the milestone (≤ 0.5) and well under what shuffled units give. Run 5's delta: 0.403
    and 0.332 against 1.047 and 1.096 in two sessions (run 4's: 0.444 against 1.029; run 2's gave 0.58-0.59
    against 0.88-0.92 across sessions; 12 fortunes were too few for a margin)."""
    from known_speech.builders.corpus import _Speaker
    from known_speech.builders.corpus_text import held_out, read_fortunes, select_sentences
    from known_speech.audio import decode_audio
    from known_speech.wer import corpus_word_error_rate
    from known_speech.evaluation.organism.listening import transcribe_units

    if not (FORTUNES_DIR / "fortunes.dat").exists():
        pytest.skip("Debian's fortunes is not installed (scripts/setup.sh installs it)")
    fortunes = [f for f in read_fortunes() if f[0] in ("fortunes", "wisdom", "people")]
    sentences = [s for s in select_sentences(fortunes, known_records).sentences if held_out(s.sentence_id)][:32]
    speaker = _Speaker(DEFAULT_VOICE, 0.02)
    units = [organism.speech_tokenizer.encode(decode_audio(speaker.utterance(s, "sentence", s.text, "")["audio"]["bytes"])[0])
             for s in sentences]
    references = [s.text for s in sentences]
    heard = corpus_word_error_rate(references, transcribe_units(organism, units))
    shuffled = corpus_word_error_rate(references, transcribe_units(organism, units, shuffle_seed=0))
    assert heard <= 0.5, heard
    assert shuffled >= heard + 0.3, (heard, shuffled)
    print(f"held-out WER {heard:.3f}, shuffled units {shuffled:.3f}")


def test_the_subject_is_heard_from_units_in_order_only(organism, listening_rows):
    """Known's spoken prompts transcribed under the transcription cue: the shipped delta writes the subject whole
    for 10 of the first 40 in the reference build (60 of 300: `benchmarks/listening.py --measures hearing`), for
    none from the same units shuffled."""
    from known_speech.evaluation.organism.listening import subject_heard

    heard = subject_heard(organism, listening_rows)
    shuffled = subject_heard(organism, listening_rows, shuffle_seed=0)
    assert [h.known_id for h in heard] == [int(r["known_id"]) for r in listening_rows]
    assert sum(h.heard for h in heard) >= 4 and sum(h.heard for h in shuffled) <= 1, \
        ([h.transcript for h in heard if h.heard], [h.transcript for h in shuffled if h.heard])
    print(f"subjects heard {sum(h.heard for h in heard)} of {len(heard)}, from shuffled units {sum(h.heard for h in shuffled)}")


def test_a_spoken_template_around_a_written_subject_is_understood(organism, listening_rows):
    """Spirit LM's interleaving of one Known prompt: the subject written, the template's units around it. The
    shipped delta recalls 7 of the first 40 so in the reference build (69 of 300, 45 of the 84 it recalls from
    text), 2 with each part's units shuffled; with the subject spoken and the template written, 3 (17 of 300, 7 of
    84), 2 shuffled: what speech loses is the subject (`benchmarks/listening.py --measures parts`). The parts are the
    span map's: the units before, inside and after the subject's span, each behind its marker."""
    from known_speech.evaluation.organism.listening import _interleaved, recall_by_part
    from known_speech.evaluation.organism.sequences import SequenceBuilder

    builder = SequenceBuilder(organism.tokenizer)
    row = next(r for r in listening_rows if r["prompt"].startswith("In "))
    units = organism.prepare(row, "speech").input_ids
    start, end = organism.prepare(row, "speech").subject_range
    after = row["prompt"][len("In ") + len(row["subject"]):]
    ids, spans = _interleaved(builder, [("text", "In "), ("speech", units[start:end]), ("text", after)])
    assert ids[:2] == [builder.text_id] + builder.text_ids("In") and ids[spans[1][0] - 1] == builder.speech_id
    assert ids[slice(*spans[1])] == units[start:end] and ids[spans[2][0] - 1] == builder.text_id
    assert organism.tokenizer.decode(ids[slice(*spans[2])]) == " " + after.lstrip(" ,")

    in_order = recall_by_part(organism, listening_rows, parts=("template_spoken",))
    shuffled = recall_by_part(organism, listening_rows, shuffle_seed=0, parts=("template_spoken",))
    assert in_order[0].subject_spoken is None  # not generated: the benchmark measures it
    heard, noise = (sum(r.match("template_spoken") != "none" for r in results) for results in (in_order, shuffled))
    print(f"template spoken, subject written: {heard} of {len(in_order)} recalled, {noise} from shuffled units")
    assert heard >= 4 and noise <= heard - 2, (heard, noise)


def test_corrupting_the_subjects_units_hides_the_subject(organism, listening_rows):
    """With the transcription cue and the words before the subject written, P(the subject's first token)
    falls when the subject's units are corrupted, not when as many units of another word are, nor when
    the subject's span is moved to the next word (a span map off by a word); the control span lies after the moved
    span (or before the subject), never on it. Run 5's delta: 1.72, 2.12 and 2.24
    nats against 0.39, 0.51 and 0.61 for both, in three sessions' voicings of the 17 usable prompts of the first 40 (run 4's:
    2.04 and 1.57 against −0.16 and −0.49; run 2's: 1.26 against −0.34). Run 5 is more sensitive to noise on any
    units; the margin, 0.75 nats, is what a span map off by a word (no difference) cannot pass."""
    from known_speech.evaluation.organism.listening import subject_unit_effects

    effects = subject_unit_effects(organism, listening_rows)
    assert len(effects) >= 10
    for effect in effects:  # the control span overlaps neither the subject nor the moved span
        (subject_start, subject_end), (control_start, control_end), (moved_start, moved_end) = effect.spans
        assert control_end <= subject_start or control_start >= max(subject_end, moved_end), effect.spans
        assert control_end - control_start == moved_end - moved_start == subject_end - subject_start
    subject = np.mean([e.clean - e.subject for e in effects])
    control = np.mean([e.clean - e.control for e in effects])
    shifted = np.mean([e.clean - e.shifted for e in effects])
    print(f"subject {subject:.3f}, control {control:.3f}, moved {shifted:.3f} (n = {len(effects)})")
    assert subject > 1.0 and subject > control + 0.75 and subject > shifted + 0.75, (subject, control, shifted)


def test_the_answer_is_likelier_from_units_in_order_and_ranked_from_both_modalities(organism, listening_rows):
    """log P(the answer's first token) after "[Speech]<units>[Text]" falls when the units are shuffled, and its
    rank among the tokens the filter may generate is lower from the written prompt than from speech (run 5 on the
    first 40: +2.18 nats; median rank 4 from text, 730 from speech)."""
    from known_speech.evaluation.organism.listening import answer_from_speech

    answers = answer_from_speech(organism, listening_rows)
    assert len(answers) == len(listening_rows)
    gain = np.mean([a.in_order - a.shuffled for a in answers])
    print(f"in order − shuffled {gain:.3f}; ranks from text {[a.rank_text for a in answers]}, "
          f"from speech {[a.rank_speech for a in answers]}")
    assert gain > 0.5, gain
    assert np.median([a.rank_text for a in answers]) < np.median([a.rank_speech for a in answers])


def test_the_listening_benchmark_prepares_each_prompt_once_and_measures_the_same(organism, listening_rows):
    """benchmarks/listening.py wraps the adapter in PreparedOnce: one Whisper + k-means pass per prompt and
    modality for all four measures, the measures unchanged."""
    from known_speech.evaluation.organism.listening import PreparedOnce, answer_from_speech

    cached, rows = PreparedOnce(organism), listening_rows[:2]
    first = cached.prepare(rows[0], "speech")
    assert cached.prepare(rows[0], "speech") is first and first.input_ids == organism.prepare(rows[0], "speech").input_ids
    assert cached.prepare(rows[0], "text").input_ids != first.input_ids and cached.describe() == organism.describe()
    assert answer_from_speech(cached, rows) == answer_from_speech(organism, rows)


# the 16 of Known's first 300 prompts that the shipped delta (run 9) recalls from speech in the reference build
# (/work/known-speech, benchmarks/data): inputs, chosen by the filter, not results
RECALLED_FROM_SPEECH = (7, 32, 40, 41, 49, 90, 130, 134, 161, 203, 215, 217, 221, 224, 245, 278)


@pytest.fixture(scope="module")
def recalled_build(tmp_path_factory, known_records):
    """Those prompts as a real Piper + Whisper build of their own (Piper's noise differs from the reference's):
    the dataset folder and its rows."""
    from datasets import load_dataset

    from known_speech.builders.build import build_dataset

    folder = tmp_path_factory.mktemp("recalled")
    source = folder / "source.json"
    records = [r for r in known_records[:300] if r.known_id in RECALLED_FROM_SPEECH]
    source.write_text(json.dumps([r.to_dict() for r in records]), encoding="utf-8")
    build_dataset(folder / "ds", source=str(source), workers=2)
    return folder / "ds", list(load_dataset(str(folder / "ds"), VOICE, split="train"))


def test_facts_are_recalled_from_speech_and_the_swap_is_the_filters(organism, recalled_build, tmp_path):
    """The filter's greedy S→T generation names the attribute for most of them, for almost none once the units
    are shuffled; `filter --subject-swap` makes for every recalled row, and only for those, the swap that
    `recall_from_speech` makes, and a resumed filter generates nothing twice. Piper's noise is not seedable, so each
    build hears these prompts a little otherwise: run 9 on two fresh builds of its 16 recalled 10 and 10, 0
    shuffled."""
    from known_speech.evaluation.filtering import run_filter
    from known_speech.evaluation.organism.listening import recall_from_speech

    rows = recalled_build[1]
    results = recall_from_speech(organism, rows)
    filtered = run_filter(organism, rows, "speech", tmp_path / "filter.jsonl", VOICE, subject_swap=True)
    assert [r.heard for r in results] == [filtered[r.known_id].generation for r in results]
    heard = [r for r in results if r.match("heard") != "none"]
    assert {k for k, row in filtered.items() if row.swapped_with >= 0} == {r.known_id for r in heard}
    assert all((filtered[r.known_id].swapped_with, filtered[r.known_id].swapped_generation) == (r.swapped_with, r.swapped)
               for r in heard)
    again = run_filter(organism, rows, "speech", tmp_path / "filter.jsonl", VOICE, subject_swap=True)
    assert again == filtered  # resumed: nothing generated twice, the swapped rows read back
    shuffled = sum(r.match("shuffled") != "none" for r in results)
    print(f"recalled from speech {len(heard)} of {len(results)}, units shuffled {shuffled}")
    assert len(heard) >= 4, [r.heard for r in results]
    assert shuffled <= 1, [r.shuffled for r in results]


def test_recall_from_speech_moves_with_the_spoken_subject(organism, recalled_build, known_records, tmp_path):
    """Each of the 16 spoken again with 3 other Known subjects of its relation (whole prompts, spoken by the same
    voice: the probes config, which `load_dataset` loads) and with made-up names. How far the subject moves the
    answer (log P of each attribute's first token at the prompt's end, toward the counterfactual's own and away
    from the fact's) is what S→T must show; a model that answers from the template alone (the subject's units
    removed from every prompt) moves it less, and names no counterfactual subject's attribute.
    The shipped delta's recall from speech is mostly the template's and follows no counterfactual subject
    (docs/subject_dependence.md), so the bounds are on the shift, paired against the template-only input, set from
    measurement; the subject-dependent flag has a noise floor of about 1 in 10 recalls under the template-only input,
    too near the shipped delta's 1-4 for a bound."""
    from functools import partial

    from datasets import load_dataset

    from known_speech.builders.probes import speak_probes
    from known_speech.evaluation.filtering import run_filter
    from known_speech.evaluation.input_controls import controlled
    from known_speech.evaluation.subject_dependence import answer_shifts, probe_filter
    from known_speech.evaluation.subject_probes import plan_probes, unique_probes
    from known_speech.layout import DatasetFolder, probes_config

    dataset, rows = recalled_build
    pool = [r.to_dict() | {"subject_char_span": list(r.subject_char_span)} for r in known_records]
    plans = plan_probes(rows, pool)
    with DatasetFolder(dataset).writing("test probes"):
        spoken = speak_probes(dataset, VOICE, list(unique_probes(plans).values()))
    assert len(spoken) >= 0.95 * len(unique_probes(plans))
    probes = load_dataset(str(dataset), probes_config(VOICE), split="train")
    assert set(probes["known_id"]) >= set(spoken) and probes[0]["words"] and probes[0]["subject_time_span"][1] > 0
    by_id = {int(r["known_id"]): r for r in rows}
    figures, pair_shifts = {}, {}
    # (units shuffled recall nothing: test_facts_are_recalled_from_speech_and_the_swap_is_the_filters)
    for name, adapter in (("spoken", organism), ("template only", controlled(organism, "template_only"))):
        shifts = answer_shifts(adapter, plans, by_id, spoken, "speech")
        pair_shifts[name] = {(s.known_id, s.counterfactual_known_id): s.total for s in shifts}
        path = tmp_path / name / "filter.jsonl"
        flagged = probe_filter(adapter, run_filter(adapter, rows, "speech", path, VOICE), rows, pool, "speech", path,
                               partial(speak_probes, dataset, VOICE))
        recalled = [r for r in flagged.values() if r.match != "none"]
        figures[name] = (np.mean([s.total for s in shifts]), len(shifts), len(recalled),
                         sum(bool(r.subject_dependent) for r in recalled), sum(bool(r.follows_subject) for r in recalled))
    # the same pairs with and without the subject's units: how much more the spoken subject moves the answer
    pairs = sorted(pair_shifts["spoken"].keys() & pair_shifts["template only"].keys())
    gap = np.array([pair_shifts["spoken"][p] - pair_shifts["template only"][p] for p in pairs])
    paired = ttest_rel([pair_shifts["spoken"][p] for p in pairs], [pair_shifts["template only"][p] for p in pairs],
                       alternative="greater").pvalue
    print({name: f"shift {f[0]:+.2f} nats over {f[1]} pairs; recalled {f[2]}, subject-dependent {f[3]}, follows {f[4]}"
           for name, f in figures.items()},
          f"spoken − template only: {gap.mean():+.2f} nats (sd {gap.std(ddof=1):.2f}, n {len(gap)}), p = {paired:.1e}")
    # measured on four fresh builds (Piper samples its noise anew each time): spoken +1.15 / +1.13 / ? / +1.27 nats
    # over 48 pairs (recalled 10 / 10 / ? / 12, subject-dependent 4 / 1 / ? / 3, follows 0); template only +0.10 /
    # +0.47 / −0.60 / +0.14 (recalled 8 / 11 / 9 / 9, subject-dependent 0 / 1 / 0 / 0: the flag's noise floor, the
    # template's audio differing between prompts spoken apart), paired p 1.6e-4 and 1.6e-3 on the last two; shuffled
    # +0.34 / +0.47 / +0.99 / +0.35 (recalled 0 each time). Shuffling keeps the subject's units, in another order: it
    # keeps part of the shift and none of the recall, so recall is its test (the test above).
    spoken, template = figures["spoken"], figures["template only"]
    assert spoken[1] >= 40 and len(pairs) >= 40 and spoken[0] > 0.6, figures
    assert paired < 0.02, (paired, figures)  # a model that answers from the template alone moves the answer less
    assert spoken[2] >= 4 and template[4] == 0, figures  # nor names a counterfactual subject's attribute


def test_results_say_which_backbone_and_which_delta(organism):
    """A result from the organism names the GGUF it was built on and the delta's adapter by sha256, as the
    report's header shows them."""
    from known_speech.evaluation.report_tables import _revision
    from known_speech.settings import bundled_smollm2_gguf
    from known_speech.source import file_sha256

    described = organism.describe()
    adapter_sha = described["delta"]["files"]["adapter_model.safetensors"]
    assert adapter_sha == file_sha256(organism.delta.folder / "adapter_model.safetensors")
    assert described["gguf_sha256"] == file_sha256(bundled_smollm2_gguf())
    assert described["quantisation"].startswith("Q4_1, dequantised to float32; LoRA delta")
    assert _revision(described) == (f"SmolLM2-135M-Instruct.Q4_1.gguf, sha256 {described['gguf_sha256'][:16]}… + "
                                    f"delta spirit-smollm2, adapter sha256 {adapter_sha[:16]}…")


def test_check_model_passes_the_organism_in_both_modalities(spoken_dataset, capsys):
    """`check-model spirit-smollm2` on a real Piper build: its own units, restoration and the expected answers."""
    from known_speech.cli import main as cli_main

    assert cli_main(["check-model", "spirit-smollm2", "--dataset", str(spoken_dataset),
                     "--config", "piper-en_US-joe-medium"]) == 0
    out = capsys.readouterr().out
    for check in ("text: restoration", "speech: input", "speech: restoration", "speech: units"):
        assert f"PASS  {check}" in out
    assert "whisper-tiny.en-own-L4-25hz-k500 (kmeans quantizer, layer 4, 25.00 Hz" in out
