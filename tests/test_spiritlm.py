"""Spirit LM on a tiny random checkpoint laid out as the release (Llama weights, a SentencePiece
tokenizer.model with [Text] [Speech] [Hu0]..[Hu500] as user-defined pieces, the fairseq mHuBERT and the
linear quantizer), over real Piper speech from a real build: the prompt formats of Meta's code, banned
tokens, unit provenance, the expressive refusal, filter settings and check-model."""

import json
import re
import shutil

import pytest
import torch

from known_speech.cli import main as cli_main
from known_speech.evaluation.adapter import adapter_class

VOICE = "piper-en_US-joe-medium"


@pytest.fixture(scope="module")
def spiritlm_checkpoint(spiritlm_release):
    """The release layout with random weights (conftest.spiritlm_release)."""
    return spiritlm_release


@pytest.mark.slow
def test_spiritlm_adapter_builds_the_release_prompt_formats(spiritlm_checkpoint, spoken_dataset):
    """Meta's strings, tokenized whole by the release's SentencePiece model as transformers 4.x does:
    <s>, the lone "▁" a user-defined marker leaves, [Text] + the prompt, or [Speech] + units + [Text]."""
    from datasets import load_dataset

    adapter = adapter_class("spiritlm")(str(spiritlm_checkpoint))
    row = next(r for r in load_dataset(str(spoken_dataset), VOICE, split="train") if r["known_id"] == 21)
    text = adapter.prepare(row, "text")
    assert text.prompt_text == "[Text]" + row["prompt"] and text.bos
    assert text.pieces[:3] == ["<s>", "▁", "[Text]"]
    assert "".join(text.text_tokens) == row["prompt"]
    subject = "".join(text.text_tokens[slice(*text.subject_text_range)])
    assert subject.strip() == row["subject"] == "Roman Republic"
    assert text.text_token_of_position[text.subject_range[0]] == text.subject_text_range[0]
    speech = adapter.prepare(row, "speech")
    assert speech.pieces[:3] == ["<s>", "▁", "[Speech]"] and speech.pieces[-1] == "[Text]"
    assert all(piece.startswith("[Hu") for piece in speech.pieces[3:-1])
    units = [int(piece[3:-1]) for piece in speech.pieces[3:-1]]
    assert all(a != b for a, b in zip(units, units[1:])), "units must be de-duplicated"
    assert len(set(units)) >= 3 and speech.metadata["num_frames"] > len(units) > 10
    assert speech.metadata["units_source"] == "speech_tokenizer" and speech.metadata["units"]["quantizer"] == "linear"
    assert speech.prompt_text == "[Speech]" + "".join(speech.pieces[3:-1]) + "[Text]"
    # the subject's positions voice the subject's text tokens; the last marker stands for the last token
    subject_links = set(speech.text_token_of_position[slice(*speech.subject_range)])
    assert subject_links & set(range(*speech.subject_text_range))
    assert speech.text_token_of_position[-1] == len(speech.text_tokens) - 1
    assert text.answer.id == speech.answer.id and not text.answer.piece.strip("▁") == ""


@pytest.mark.slow
def test_spiritlm_generation_bans_markers_and_speech_tokens(spiritlm_checkpoint, spoken_dataset):
    """Meta's generate(output_modality="text") passes [Text], [Speech] and every [Hu..] as bad_words_ids;
    a model left free emits them, ours never does, and equals HF generate with that ban."""
    from datasets import load_dataset

    adapter = adapter_class("spiritlm")(str(spiritlm_checkpoint))
    banned = adapter.banned_token_ids("speech")
    pieces = adapter.tokenizer.convert_ids_to_tokens(banned)
    assert len(banned) == 503 and {"[Text]", "[Speech]", "[Hu0]", "[Hu500]"} <= set(pieces)
    row = next(r for r in load_dataset(str(spoken_dataset), VOICE, split="train") if r["known_id"] == 21)
    model_input = adapter.prepare(row, "speech")
    ids = torch.tensor([model_input.input_ids])
    with torch.no_grad():  # a model that prefers speech tokens, as Spirit LM may after a speech prompt
        adapter.model.lm_head.weight[banned] *= 5
    free = adapter.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
    assert set(free[0, ids.shape[1]:].tolist()) & set(banned), "the test needs a model that drifts into speech"
    ours = adapter.generate(model_input, 20)
    meta = adapter.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                                  bad_words_ids=[[i] for i in banned], pad_token_id=adapter.tokenizer.eos_token_id)
    assert not set(meta[0, ids.shape[1]:].tolist()) & set(banned)
    assert ours == adapter.tokenizer.decode(meta[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_check_model_passes_on_the_release_layout_and_fails_without_bos(spiritlm_checkpoint, spoken_dataset, tmp_path,
                                                                     capsys):
    model = str(spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b")
    argv = ["check-model", model, "--dataset", str(spoken_dataset), "--config", VOICE]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    for line in ("PASS  text: BOS", "PASS  speech: BOS", "PASS  speech: units", "PASS  text: answer token",
                 "PASS  speech: restoration", "WARN  text: recall"):  # random weights recall nothing
        assert line in out, out
    assert "['<s>', '▁', '[Speech]', '[Hu" in out  # the exact pieces fed are shown
    # a voice that is not built: the text checks run, and the speech checks are said not to have run
    assert cli_main(["check-model", model, "--dataset", str(spoken_dataset), "--config", "piper-nope"]) == 0
    out = capsys.readouterr().out
    assert "PASS  text: BOS" in out and "speech: BOS" not in out
    assert re.search(r"WARN  speech +not run: --config piper-nope: not a built voice config; voice configs of "
                     + re.escape(f"{spoken_dataset}: {VOICE} (`known-speech build --out {spoken_dataset}` makes one)"), out)
    # the same checkpoint whose tokenizer defines no BOS: Meta's code would start with <s>, ours cannot
    broken = tmp_path / "spiritlm"
    shutil.copytree(spiritlm_checkpoint, broken)
    lm_dir = broken / "spiritlm_model" / "spirit-lm-base-7b"
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = json.loads((lm_dir / name).read_text())
        config["bos_token"] = None
        (lm_dir / name).write_text(json.dumps(config))
    assert cli_main(["check-model", str(lm_dir), "--dataset", str(spoken_dataset), "--config", VOICE]) == 1
    captured = capsys.readouterr()
    assert "FAIL  text: BOS" in captured.out and "check-model failed: text: BOS, speech: BOS" in captured.err


@pytest.fixture(scope="module")
def spoken_dataset_with_units(tmp_path_factory, known_records, spiritlm_checkpoint):
    """A real Piper build whose rows carry the units of the release's speech tokenizer."""
    from known_speech.builders.build import build_dataset

    folder = tmp_path_factory.mktemp("spoken-units")
    by_id = {r.known_id: r for r in known_records}
    source = folder / "source.json"
    source.write_text(json.dumps([by_id[i].to_dict() for i in (21, 65)]), encoding="utf-8")
    build_dataset(folder / "known-speech", source=str(source), workers=1, unit_tokenizer=str(spiritlm_checkpoint))
    return folder / "known-speech"


@pytest.mark.slow
def test_stored_units_are_used_only_when_this_model_s_tokenizer_made_them(spiritlm_checkpoint, spoken_dataset_with_units):
    from datasets import load_dataset

    from known_speech.audio import waveform_of

    adapter = adapter_class("spiritlm")(str(spiritlm_checkpoint))
    rows = list(load_dataset(str(spoken_dataset_with_units), VOICE, split="train"))
    span = next(s for s in rows[0]["speech_token_spans"] if s["tokenizer"] == "hubert-25hz")
    provenance = adapter.speech_tokenizer.provenance
    assert (span["units_quantizer"], span["units_checkpoint_sha256"]) == ("linear", provenance.checkpoint_sha256)
    model_input = adapter.prepare(rows[0], "speech")
    assert model_input.metadata["units_source"] == "dataset"
    assert span["units"] == adapter.speech_tokenizer.encode(waveform_of(rows[0]["audio"])).tolist()
    other = {**rows[0], "speech_token_spans": [{**s, "units_checkpoint_sha256": "0" * 64, "units_quantizer": "kmeans",
                                                 "units_tokenizer": "twist-L11"} for s in rows[0]["speech_token_spans"]]}
    with pytest.raises(ValueError, match="made by twist-L11 .kmeans.*rebuild with --unit-tokenizer"):
        adapter.prepare(other, "speech")
    unrecorded = {**rows[0], "speech_token_spans": [{**s, "units_checkpoint_sha256": None}
                                                     for s in rows[0]["speech_token_spans"]]}
    with pytest.raises(ValueError, match="record no tokenizer"):
        adapter.prepare(unrecorded, "speech")


@pytest.mark.slow
def test_expressive_checkpoint_without_pitch_and_style_tokenizers_is_refused(tmp_path, spoken_dataset):
    from datasets import load_dataset

    from .release_formats import EXPRESSIVE_MARKERS, SPIRITLM_MARKERS, train_sentencepiece, write_spiritlm_release

    model = train_sentencepiece(tmp_path / "sp", SPIRITLM_MARKERS + EXPRESSIVE_MARKERS)
    lm_dir = write_spiritlm_release(tmp_path / "checkpoints", model, expressive=True)
    adapter = adapter_class("spiritlm")(str(lm_dir))
    assert adapter.expressive and len(adapter.banned_token_ids("text")) == 503 + 164
    row = next(r for r in load_dataset(str(spoken_dataset), VOICE, split="train") if r["known_id"] == 21)
    assert adapter.prepare(row, "text").pieces[2] == "[Text]"
    with pytest.raises(ValueError, match=r"expressive model: its prompts interleave \[Pi..\] and \[St..\]"):
        adapter.prepare(row, "speech")


@pytest.mark.slow
def test_filter_records_its_settings_and_refuses_a_resume_with_others(spiritlm_checkpoint, spoken_dataset, tmp_path):
    dataset = tmp_path / "ds"
    model = str(spiritlm_checkpoint / "spiritlm_model" / "spirit-lm-base-7b")
    argv = ["filter", "--model", model, "--modality", "text", "--dataset", str(dataset), "--limit", "2"]
    assert cli_main(argv) == 0
    settings = json.loads((dataset / "filters" / "spirit-lm-base-7b" / "text.json").read_text())  # published copy
    assert settings["dtype"] == "float32" and settings["banned_tokens"] == 503 and settings["max_new_tokens"] == 12
    assert cli_main(argv + ["--max-new-tokens", "5"]) == 2
    assert cli_main(argv) == 0  # the same settings resume
