"""spirit-smollm2's training sequences on SmolLM2's real tokenizer: Spirit LM's formats, loss weights, the
distillation alignment, and the added tokens' ids."""

import random
from dataclasses import replace

import numpy as np
import pytest

from known_speech.evaluation.organism.sequences import ASR_CUE, SequenceBuilder, Utterance
from known_speech.evaluation.organism.vocabulary import added_tokens, extend_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from known_speech.settings import bundled_smollm2_gguf

    gguf = bundled_smollm2_gguf()
    return extend_tokenizer(AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name), 10)


def _utterance(kind="sentence", text="The cat sat on the mat.", continuation=""):
    words = text.split()
    spans, start = [], 0
    for word in words:
        start = text.index(word, start)
        spans.append((start, start + len(word.rstrip("."))))
        start += len(word)
    times = [(0.2 + 0.4 * i, 0.5 + 0.4 * i) for i in range(len(words))]
    # 25 Hz units: unit = word index + 1 inside words, 0 in silences
    frames = int(np.ceil((times[-1][1] + 0.2) * 25))
    units = np.zeros(frames, dtype=np.int64)
    for index, (a, b) in enumerate(times):
        units[int(np.floor(a * 25)):int(np.ceil(b * 25))] = index + 1
    return Utterance("u", "s", kind, text, continuation, units, spans, times)


def test_added_tokens_follow_the_base_vocabulary(tokenizer):
    ids = tokenizer.convert_tokens_to_ids(added_tokens(10))
    assert ids == list(range(49152, 49152 + 12))
    assert tokenizer.convert_ids_to_tokens(tokenizer("[Speech][Hu3][Hu1][Text] Rome").input_ids) == \
        ["[Speech]", "[Hu3]", "[Hu1]", "[Text]", "ĠRome"]


def test_speech_to_text_is_cued_and_closed(tokenizer):
    builder = SequenceBuilder(tokenizer, speech_weight=0.2)
    utterance = _utterance()
    sequence = builder.speech_to_text(utterance)
    text = tokenizer.decode(sequence.ids)
    assert text.startswith("[Text]" + ASR_CUE + "[Speech][Hu0][Hu1][Hu0][Hu2]")
    assert text.endswith("[Text]The cat sat on the mat.<|endoftext|>")
    assert sequence.ids[:len(builder.asr_prompt(utterance))] == builder.asr_prompt(utterance)
    units = [i for i, token in enumerate(sequence.ids) if token >= builder.unit_base]
    assert {sequence.weights[i] for i in units} == {0.2}
    assert sequence.weights[-1] == 1.0 and sequence.weights[0] == 0.0


def test_continuation_distils_on_the_same_text_tokens(tokenizer):
    builder = SequenceBuilder(tokenizer)
    prefix = _utterance("prefix", "The capital of Italy is", "Rome, of course.")
    sequence = builder.continuation(prefix)
    rest = tokenizer(" Rome, of course.", add_special_tokens=False).input_ids
    assert sequence.ids[-len(rest) - 1:] == [builder.text_id] + rest
    assert sequence.ids[0] == builder.speech_id
    assert sequence.teacher_ids == tokenizer("The capital of Italy is", add_special_tokens=False).input_ids + rest
    assert sequence.distill_last == len(rest)
    # the last `distill_last` next-token predictions of both sequences are of the same tokens
    assert sequence.ids[-sequence.distill_last:] == sequence.teacher_ids[-sequence.distill_last:]


def test_fact_prefixes_are_their_own_kind_and_drawn_only_where_the_bundle_has_them(tokenizer):
    """A fact prefix distils as a continuation does, under its own kind (its own share of the mix and its own
    held-out loss); a mix asking for fact prefixes from a bundle without them draws the other kinds only."""
    from known_speech.evaluation.organism.train import TrainOptions, _Batches

    builder = SequenceBuilder(tokenizer)
    fact = builder.continuation(_utterance("fact_prefix", "Lyon is located in the country of", "France."))
    fortune = builder.continuation(_utterance("prefix", "The cat sat on", "the mat."))
    assert (fact.kind, fortune.kind) == ("fact_continuation", "continuation")
    assert fact.teacher_ids[-fact.distill_last:] == fact.ids[-fact.distill_last:]
    options = TrainOptions("", "", batch_tokens=4096, pool_size=64)
    sentence = _utterance()
    without = _Batches(builder, [sentence, _utterance("prefix", "The cat sat on", "the mat.")], 25.0, options,
                       random.Random(0), num_units=10)
    assert "fact_continuation" not in without.mix and sum(without.mix.values()) == pytest.approx(1.0)
    assert {s.kind for s in without.draw()} <= set(without.mix)
    both = _Batches(builder, [sentence, _utterance("prefix", "The cat sat on", "the mat."),
                              _utterance("fact_prefix", "Lyon is located in the country of", "France.")],
                    25.0, options, random.Random(0), num_units=10)
    drawn = [s.kind for _ in range(len(both.queue) or 1) for s in both.draw()]
    assert "fact_continuation" in drawn and both.mix["fact_continuation"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no utterances for any kind"):
        _Batches(builder, [sentence], 25.0, TrainOptions("", "", mix={"fact_continuation": 1.0}), random.Random(0))


def test_a_names_state_is_paired_at_its_last_unit_and_its_last_token(tokenizer):
    """entity_state: "[Speech]<units>" of a name sentence, its pair the position of the name's last unit (the
    last run overlapping the name's frames) and the backbone's position of the name's last token; drawn from
    name sentences and fact prefixes as --entity-sources says, and left out of a bundle that has neither."""
    from known_speech.evaluation.organism.train import TrainOptions, _Batches

    builder = SequenceBuilder(tokenizer)
    plain = _utterance(text="I heard the name Grand Duchy of Finland.")
    name = Utterance(**{**plain.__dict__, "entity": (17, 39)})  # "Grand Duchy of Finland"
    sequence = builder.entity_state(name, 25.0)
    assert sequence.kind == "entity_state" and sequence.ids[0] == builder.speech_id
    assert sequence.ids[1:] == builder.utterance_unit_ids(name) and not sequence.distill_last
    (own, theirs), = sequence.state_pairs
    # golden: words are 0.4 s apart, units = word index + 1 inside words and 0 between; de-duplicated, the
    # stream is 0 1 0 2 0 3 ... so word k (from 0) is position 2k + 1, and "Finland." is word 7
    assert tokenizer.convert_ids_to_tokens(sequence.ids[own]) == "[Hu8]" and own == 1 + 2 * 7 + 1
    assert tokenizer.decode(sequence.teacher_ids[:theirs + 1]) == "I heard the name Grand Duchy of Finland"
    assert tokenizer.decode(sequence.teacher_ids) == name.text
    first = Utterance(**{**_utterance(text="Grand Duchy of Finland came up again today.").__dict__, "entity": (0, 22)})
    (own, theirs), = builder.entity_state(first, 25.0).state_pairs
    assert own == 1 + 2 * 3 + 1 and tokenizer.decode(builder.entity_state(first, 25.0).teacher_ids[:theirs + 1]) \
        == "Grand Duchy of Finland"
    with pytest.raises(ValueError, match="neither a name sentence nor a fact prefix"):
        builder.entity_state(plain, 25.0)
    options = TrainOptions("", "", batch_tokens=4096, pool_size=64, mix={"entity_state": 0.5, "speech_to_text": 0.5})
    with_names = _Batches(builder, [plain, name], 25.0, options, random.Random(0), num_units=10)
    drawn = [s for _ in range(len(with_names.queue) or 1) for s in with_names.draw()]
    assert {s.kind for s in drawn} == {"entity_state", "speech_to_text"}
    assert all(s.state_pairs == sequence.state_pairs for s in drawn if s.kind == "entity_state")
    without = _Batches(builder, [plain], 25.0, options, random.Random(0), num_units=10)
    assert without.mix == {"speech_to_text": 1.0}
    # a fact prefix's entity (bundle version 3): paired where a Known S→T prompt's subject ends
    fact = Utterance(**{**_utterance("fact_prefix", "Lyon is located in the country of", "France").__dict__,
                        "entity": (0, 4)})
    (own, theirs), = builder.entity_state(fact, 25.0).state_pairs
    assert own == 1 + 1 and tokenizer.decode(builder.entity_state(fact, 25.0).teacher_ids[:theirs + 1]) == "Lyon"
    assert builder.entity_state(fact, 25.0).utterance_kind == "fact_prefix" and sequence.utterance_kind == "sentence"
    for sources, pool in (("names,facts", [name, fact]), ("names", [name]), ("facts", [fact])):
        batches = _Batches(builder, [plain, name, fact], 25.0, replace(options, entity_sources=sources), random.Random(0))
        assert batches.entities == pool
    with pytest.raises(ValueError, match="--entity-sources 'people'"):
        TrainOptions("", "", entity_sources="people")


def test_a_bundle_keeps_the_name_spans_and_says_its_version(tmp_path):
    """Name spans travel in the bundle; a bundle written before them reads as version 1 (the organism command
    makes it again) with no spans."""
    import gzip
    import json

    from known_speech.evaluation.organism.bundle import BUNDLE_VERSION, read_bundle, write_bundle

    plain = _utterance()
    name = Utterance(**{**_utterance(text="I heard the name Rhine.").__dict__, "entity": (17, 22)})
    write_bundle(tmp_path, [plain, name], ["train", "test"], {"k": 10, "rate_hz": 25.0}, np.zeros((10, 4)), {})
    bundle = read_bundle(tmp_path)
    assert bundle.version == BUNDLE_VERSION == 3 and [u.entity for u in bundle.utterances] == [None, (17, 22)]
    assert (bundle.utterances[1].units == name.units).all() and bundle.splits == ["train", "test"]
    meta = json.loads(gzip.decompress((tmp_path / "bundle.json.gz").read_bytes()))
    del meta["version"]
    for utterance in meta["utterances"]:
        utterance.pop("entity", None)
    (tmp_path / "bundle.json.gz").write_bytes(gzip.compress(json.dumps(meta).encode()))
    older = read_bundle(tmp_path)
    assert older.version == 1 and all(u.entity is None for u in older.utterances)


def test_a_fact_prefixs_entity_is_its_known_template_taken_off(known_records, tmp_path):
    """Every Known prompt's subject is recovered from its template's text by the templates alone (98 of the 1,209
    fit more than one template: the longest fixed part decides); the bundle reads a fact prefix's entity and a name
    sentence's name from a corpus shard, and marks nothing in a fortune."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from known_speech.corpus_spans import NAME_CARRIERS, fact_entity_span
    from known_speech.evaluation.organism.bundle import corpus_utterances

    templates = sorted({r.template for r in known_records})
    for record in known_records:
        text = record.template.format(record.subject)
        start, end = fact_entity_span(text, templates)
        assert text[start:end] == record.subject, text
    assert fact_entity_span("The cat sat on the mat.", templates) is None
    texts = {"fortune": "The cat sat on the mat.", "names:known-subjects": NAME_CARRIERS[0].format(name="Rhine"),
             "facts:geonames:city": known_records[0].template.format("Lyon")}  # "Lyon is located in the continent"
    rows = [{"utterance_id": f"u{i}", "sentence_id": f"s{i}", "kind": "fact_prefix" if source.startswith("facts:") else "sentence",
             "split": "train", "text": text, "continuation": "", "source": source,
             "words": [{"char_start": 0, "char_end": len(text), "start_s": 0.0, "end_s": 1.0}]}
            for i, (source, text) in enumerate(texts.items())]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "shard-00000.parquet")
    (tmp_path / "units" / "tok").mkdir(parents=True)
    np.savez(tmp_path / "units" / "tok" / "shard-00000.npz", utterance_ids=np.array(["u0", "u1", "u2"]),
             starts=np.array([0, 3, 6]), ends=np.array([3, 6, 9]), units=np.arange(9))
    utterances, splits = corpus_utterances(tmp_path, tmp_path / "tok")
    spans = [u.text[u.entity[0]:u.entity[1]] if u.entity else None for u in utterances]
    assert spans == [None, "Rhine", "Lyon"] and splits == ["train"] * 3
    assert [u.units.tolist() for u in utterances] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_interleaving_switches_at_word_boundaries(tokenizer):
    builder = SequenceBuilder(tokenizer, max_segment_words=2)
    utterance = _utterance()
    for seed in range(20):
        sequence = builder.interleaved(utterance, 25.0, random.Random(seed))
        pieces = tokenizer.convert_ids_to_tokens(sequence.ids)
        words = [p.lstrip("Ġ") for p in pieces if p not in ("[Text]", "[Speech]") and not p.startswith("[Hu")]
        spoken = {int(p[3:-1]) for p in pieces if p.startswith("[Hu")} - {0}
        written = {i + 1 for i, w in enumerate("The cat sat on the mat".split()) if w in words}
        # every word is either written or spoken (its unit appears), never lost
        assert written | spoken == set(range(1, 7)), (seed, pieces)
        assert pieces[0] in ("[Text]", "[Speech]")
        switches = sum(p in ("[Text]", "[Speech]") for p in pieces)
        assert switches >= 3


def test_text_replay_plain_is_distilled_whole(tokenizer):
    builder = SequenceBuilder(tokenizer)
    kinds = {len(builder.text(_utterance(), random.Random(seed)).teacher_ids) > 0 for seed in range(10)}
    assert kinds == {True, False}
    plain = next(s for s in (builder.text(_utterance(), random.Random(seed)) for seed in range(10)) if s.teacher_ids)
    assert plain.ids == plain.teacher_ids and plain.distill_last == len(plain.ids) - 1


def test_loss_curves_of_the_shipped_run_are_drawn_and_a_folder_without_a_record_is_named(tmp_path, capsys):
    """The shipped delta's training.json drawn by the curves command; a run folder without one is refused by name."""
    from PIL import Image

    from known_speech.evaluation.organism.curves import main as curves
    from known_speech.evaluation.organism.delta import OrganismDelta

    curves([f"shipped={OrganismDelta.resolve('spirit-smollm2').folder}", "--out", str(tmp_path / "curves.png")])
    width, height = Image.open(tmp_path / "curves.png").size
    assert width > 3 * height > 0
    with pytest.raises(SystemExit):
        curves([str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert f"{tmp_path}: no training.json there" in capsys.readouterr().err


def test_unit_noise_replaces_unit_tokens_only_and_at_its_rate(tokenizer):
    """--unit-noise swaps unit tokens for random units (a discrete SpecAugment) and never touches text,
    markers or the loss weights; at 0 the batch is the sequences as built."""
    from known_speech.evaluation.organism.train import TrainOptions, _Batches

    builder = SequenceBuilder(tokenizer)
    utterance = _utterance(text="The cat sat on the mat and then slept.")  # units 0..9
    options = TrainOptions("", "", unit_noise=0.5, batch_tokens=4096, pool_size=8)
    batches = _Batches(builder, [utterance], 25.0, options, random.Random(0), num_units=10)
    clean = builder.speech_to_text(utterance)
    unit = np.asarray(clean.ids) >= builder.unit_base
    changed = np.zeros(len(clean.ids))
    for _ in range(200):
        noisy = batches.noisy(clean)
        assert noisy.weights == clean.weights and len(noisy.ids) == len(clean.ids)
        assert [i for i, u in zip(noisy.ids, unit) if not u] == [i for i, u in zip(clean.ids, unit) if not u]
        assert all(builder.unit_base <= i < builder.unit_base + 10 for i, u in zip(noisy.ids, unit) if u)
        changed += np.asarray(noisy.ids) != np.asarray(clean.ids)
    # a swapped unit is another unit 9 times in 10
    assert 0.40 < changed[unit].mean() / 200 < 0.50
    quiet = _Batches(builder, [utterance], 25.0, TrainOptions("", "", batch_tokens=4096, pool_size=8,
                     mix={"speech_to_text": 1.0}), random.Random(0), num_units=10)
    assert all(s.ids == clean.ids for s in quiet.draw())


def test_the_output_loss_in_checkpointed_chunks_equals_the_whole():
    """The weighted next-token loss computed a chunk of positions at a time (its logits recomputed in the
    backward pass, so a large batch never holds them all) has the same value and gradients as at once."""
    import torch

    from known_speech.evaluation.organism.train import _weighted_next_token_loss

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    weights = torch.where(torch.rand(37) < 0.5, 1.0, 0.2)
    results = []
    for chunk in (1000, 5):
        head.zero_grad()
        hidden.grad = None
        loss = _weighted_next_token_loss(head, hidden, targets, weights, chunk, "cpu")
        loss.backward()
        results.append((loss.detach(), hidden.grad.clone(), head.weight.grad.clone()))
    expected = (torch.nn.functional.cross_entropy(head(hidden), targets, reduction="none") * weights).sum() / weights.sum()
    torch.testing.assert_close(results[0][0], expected.detach())
    for whole, chunked in zip(results[0], results[1]):
        torch.testing.assert_close(whole, chunked)


def test_a_spoken_entity_is_read_by_the_written_words_after_it(tokenizer):
    """spoken_entity: the entity alone spoken, the words around it written, its tail (the written words after
    the entity and the continuation) the same tokens as the teacher's and distilled position by position;
    drawn from the entity_state pool."""
    from known_speech.evaluation.organism.train import TrainOptions, _Batches

    builder = SequenceBuilder(tokenizer, speech_weight=0.2)
    fact = Utterance(**{**_utterance("fact_prefix", "The mother tongue of Grand Duchy of Finland is", "Finnish.").__dict__,
                        "entity": (21, 43)})
    sequence = builder.spoken_entity(fact, 25.0)
    # golden: "Grand Duchy of Finland" is words 4-7, whose frames hold units 5..8 and the silences after each
    # (the silence after "Finland" up to "is" goes with it)
    assert tokenizer.decode(sequence.ids) == ("[Text]The mother tongue of[Speech][Hu5][Hu0][Hu6][Hu0][Hu7][Hu0][Hu8][Hu0]"
                                              "[Text] is Finnish.")
    assert tokenizer.decode(sequence.teacher_ids) == "The mother tongue of Grand Duchy of Finland is Finnish."
    tail = tokenizer(" is", add_special_tokens=False).input_ids + tokenizer(" Finnish.", add_special_tokens=False).input_ids
    assert sequence.distill_last == len(tail) and sequence.ids[-len(tail):] == sequence.teacher_ids[-len(tail):] == tail
    units = [i for i, token in enumerate(sequence.ids) if token >= builder.unit_base]
    assert {sequence.weights[i] for i in units} == {0.2} and sequence.weights[-1] == 1.0
    assert not sequence.state_pairs and sequence.utterance_kind == "fact_prefix"
    # an entity that opens the prefix: no written words before it, the leading silence spoken with it
    first = Utterance(**{**_utterance("fact_prefix", "Lyon is located in the country of", "France").__dict__, "entity": (0, 4)})
    assert tokenizer.decode(builder.spoken_entity(first, 25.0).ids) == "[Speech][Hu0][Hu1][Hu0][Text] is located in the country of France"
    with pytest.raises(ValueError, match="neither a name sentence nor a fact prefix"):
        builder.spoken_entity(_utterance(), 25.0)
    options = TrainOptions("", "", batch_tokens=4096, pool_size=64, mix={"spoken_entity": 0.5, "speech_to_text": 0.5})
    drawn = _Batches(builder, [_utterance(), fact], 25.0, options, random.Random(0), num_units=10)
    assert {s.kind for batch in drawn.queue or [drawn.draw()] for s in batch} <= {"spoken_entity", "speech_to_text"}
    assert _Batches(builder, [_utterance()], 25.0, options, random.Random(0)).mix == {"speech_to_text": 1.0}


def test_a_cpu_run_measures_the_names_and_the_fact_prefixes_states_apart(tmp_path):
    """Two training steps of the real trainer on SmolLM2 (CPU) from a bundle of fortunes, names and fact prefixes:
    entity_state draws from both, and each evaluation logs the held-out state distance of names (the figure runs 8
    and 9 report) and of fact prefixes apart; the run records what it drew from."""
    import json

    from known_speech.evaluation.organism.bundle import write_bundle
    from known_speech.evaluation.organism.train import TrainOptions, train

    def utterance(kind, text, continuation, entity, uid):
        return Utterance(**{**_utterance(kind, text, continuation).__dict__, "utterance_id": uid, "sentence_id": uid,
                            "entity": entity})

    utterances, splits = [], []
    for split in ("train", "test"):
        for i in range(3):
            utterances += [utterance("sentence", "The cat sat on the mat.", "", None, f"s{i}{split}"),
                           utterance("sentence", "I heard the name Rhine.", "", (17, 22), f"n{i}{split}"),
                           utterance("fact_prefix", "Lyon is located in the continent", "of Europe", (0, 4), f"f{i}{split}")]
            splits += [split] * 3
    unit_tokenizer = {"k": 10, "rate_hz": 25.0, "name": "test", "checkpoint_sha256": "0" * 64}
    write_bundle(tmp_path / "bundle", utterances, splits, unit_tokenizer,
                 np.random.default_rng(0).standard_normal((10, 576)).astype(np.float32), {})
    record = train(TrainOptions(str(tmp_path / "bundle"), str(tmp_path / "run"), device="cpu", max_steps=2,
                                eval_every=1, eval_sequences=8, transcribe=1, batch_tokens=1024, pool_size=16,
                                warmup_steps=1, mix={"speech_to_text": 0.4, "entity_state": 0.3, "spoken_entity": 0.3}))
    assert [e["step"] for e in record["evaluations"]] == [1, 2]
    for evaluation in record["evaluations"]:
        assert 0 < evaluation["held_out_entity_state"] < 2 and 0 < evaluation["held_out_fact_entity_state"] < 2
        # the spoken entities' held-out CE is logged beside the held-out loss, which stays the earlier kinds' mean
        by_kind = evaluation["held_out_ce_by_kind"]
        assert by_kind["spoken_entity"] > 0 and evaluation["held_out_ce"] == pytest.approx(
            np.mean([v for k, v in by_kind.items() if k != "spoken_entity"]))
    assert record["options"]["entity_sources"] == "names,facts"
    assert json.loads((tmp_path / "run" / "training.json").read_text())["evaluations"] == record["evaluations"]


def test_the_own_state_teacher_is_the_text_path_with_the_lora_on(tokenizer):
    """--state-teacher own: the state term of a spoken name is its distance to the model's own states on the
    name as text (LoRA on), layer by layer, and --state-teacher backbone its distance to the frozen backbone's.
    With a LoRA that is not zero the two differ, so a trainer that read the backbone for both fails here."""
    import types

    import torch

    from known_speech.evaluation.organism.train import (TrainOptions, _load_backbone, _losses, build_organism,
                                                        relative_state_distance)

    model, text_tokenizer = _load_backbone("smollm2", "cpu")
    bundle = types.SimpleNamespace(num_units=10, unit_init=np.random.default_rng(0).standard_normal((10, 576)).astype(np.float32))
    options = TrainOptions("", "", device="cpu", lora_rank=4, lora_alpha=8)
    model, base_vocab = build_organism(model, text_tokenizer, bundle, options)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    model.eval()
    builder = SequenceBuilder(text_tokenizer)
    plain = _utterance(text="I heard the name Grand Duchy of Finland.")
    sequence = builder.entity_state(Utterance(**{**plain.__dict__, "entity": (17, 39)}), 25.0)
    (own, theirs), = sequence.state_pairs
    pad = text_tokenizer.eos_token_id
    with torch.no_grad():
        measured = {teacher: _losses(model, [sequence], replace(options, state_teacher=teacher), base_vocab, pad)[1]["state"]
                    for teacher in ("own", "backbone")}
        base = model.get_base_model().model
        spoken = base(input_ids=torch.tensor([sequence.ids]), output_hidden_states=True).hidden_states[1:]
        text = base(input_ids=torch.tensor([sequence.teacher_ids]), output_hidden_states=True).hidden_states[1:]
        with model.disable_adapter():
            frozen = base(input_ids=torch.tensor([sequence.teacher_ids]), output_hidden_states=True).hidden_states[1:]

    def expected(reference):
        return float(torch.stack([relative_state_distance(s[0, own], r[0, theirs]) for s, r in zip(spoken, reference)]).mean())

    assert measured["own"] == pytest.approx(expected(text), rel=1e-4)
    assert measured["backbone"] == pytest.approx(expected(frozen), rel=1e-4)
    # the two teachers' terms lie far apart next to the tolerance above (0.45 % here, against 0.01 %)
    assert abs(measured["own"] - measured["backbone"]) > 2e-3 * measured["backbone"]
    with pytest.raises(ValueError, match="--state-teacher 'teacher'"):
        TrainOptions("", "", state_teacher="teacher")

    # --state-layers: the term is the mean over the layers named (both ends of a range in), not over every one
    with torch.no_grad():
        counted = _losses(model, [sequence], replace(options, state_teacher="own", state_layers="2-3,7"), base_vocab,
                          pad)[1]["state"]
    by_layer = [float(relative_state_distance(s[0, own], r[0, theirs])) for s, r in zip(spoken, text)]
    assert counted == pytest.approx(np.mean([by_layer[i] for i in (2, 3, 7)]), rel=1e-4)
    assert abs(counted - measured["own"]) > 1e-3 * measured["own"]
    for malformed in ("8-a", "-1", "3,,4"):
        with pytest.raises(ValueError, match="--state-layers"):
            TrainOptions("", "", state_layers=malformed)
    with pytest.raises(ValueError, match="decoder layers 0..29"):
        build_organism(model, text_tokenizer, bundle, replace(options, state_layers="12,30"))  # refused first
