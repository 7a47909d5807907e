"""whisper-smollm2's parts on CPU: the Voxtral instance computes the backbone's text logits through the permuted rows;
the trainer's prompts and features are what Voxtral's own processor and the voxtral adapter build; a run trains,
packages into a delta that loads by its manifest through the whisper-smollm2 adapter, and a corrupt or foreign delta
is refused."""

import json
import shutil

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def instance(tmp_path_factory, smollm2):
    from known_speech.evaluation.organism.continuous import assemble
    from known_speech.settings import bundled_whisper_dir

    folder = tmp_path_factory.mktemp("instance")
    model, processor = assemble(*smollm2, bundled_whisper_dir() / "model.bin", folder)
    return folder, model, processor


def test_the_instance_reads_text_as_the_backbone_does(instance, smollm2, known_records):
    """Known prompts tokenized by the tekken.json as by SmolLM2's own tokenizer (all 1,209), and the instance's
    logits at the prompt's end are the backbone's, row for row through the id map."""
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    from known_speech.evaluation.organism.continuous import tekken_backbone_ids

    folder, model, _ = instance
    backbone, tokenizer = smollm2
    tekken = Tekkenizer.from_file(str(folder / "tekken.json"))
    ids = tekken_backbone_ids(folder / "tekken.json", tokenizer)
    for record in known_records:
        ours = tekken.encode(record.prompt, bos=False, eos=False)
        assert [int(ids[i]) for i in ours] == tokenizer(record.prompt).input_ids, record.prompt
    prompt = known_records[21].prompt
    with torch.no_grad():
        theirs = backbone(torch.tensor([tokenizer(prompt).input_ids])).logits[0, -1]
        ours = model(input_ids=torch.tensor([tekken.encode(prompt, bos=False, eos=False)])).logits[0, -1]
    mapped = torch.from_numpy(ids >= 0)
    assert torch.allclose(ours[mapped], theirs[torch.from_numpy(ids[ids >= 0])], atol=1e-4)
    assert tokenizer.decode(theirs.argmax()) == " Rome" and tekken.decode([int(ours.argmax())]) == " Rome"


def test_the_trainers_prompts_are_voxtrals_own(instance, spoken_dataset, smollm2):
    """The trainer builds its ids without mistral-common (the GPU host has none): they equal the chat encoding that
    Voxtral's processor makes of the same turn, through the voxtral adapter, for speech, speech with the transcription
    instruction and text; its log-mel features equal the processor's."""
    import transformers
    from datasets import load_dataset

    from known_speech.audio import waveform_of
    from known_speech.evaluation.adapter import adapter_class
    from known_speech.evaluation.organism.continuous import AUDIO_POSITIONS, CHAT
    from known_speech.evaluation.organism.continuous_batches import student_ids
    from known_speech.evaluation.organism.continuous_train import INSTRUCTION, Vocabulary

    folder, _, _ = instance
    row = load_dataset(str(spoken_dataset), "piper-en_US-joe-medium", split="train")[2]
    vocabulary = Vocabulary(folder / "tekken.json", smollm2[1], "cpu")
    written = vocabulary.tekken(smollm2[1](row["prompt"]).input_ids)
    plain, instructed = adapter_class("voxtral")(str(folder)), adapter_class("voxtral")(str(folder), instruction=INSTRUCTION)
    inputs, _ = plain._speech_inputs(waveform_of(row["audio"]), 0)
    assert inputs["input_ids"][0].tolist() == student_ids(CHAT, AUDIO_POSITIONS, None)
    instruction = vocabulary.tekken(smollm2[1](INSTRUCTION).input_ids)
    assert instructed._speech_inputs(waveform_of(row["audio"]), 0)[0]["input_ids"][0].tolist() == \
        student_ids(CHAT, AUDIO_POSITIONS, None, instruction)
    assert plain.prepare(row, "text").input_ids == student_ids(CHAT, AUDIO_POSITIONS, written)
    features = transformers.WhisperFeatureExtractor(feature_size=80)(
        waveform_of(row["audio"]), sampling_rate=16000, return_tensors="pt").input_features
    assert torch.equal(features, inputs["input_features"])


def test_a_run_trains_packages_and_loads_through_the_voxtral_row(spoken_dataset, smollm2, tmp_path):
    """Six spoken prompts, two steps of each stage on CPU: the losses are finite, the delta holds the LoRA, the
    projector and the control rows in under 25 MB, loads by its manifest through the whisper-smollm2 adapter (the
    voxtral row's prompts, 379 positions for speech), and a corrupt file or another backbone is refused by name."""
    from datasets import load_dataset

    from known_speech.audio import waveform_of
    from known_speech.evaluation.adapter import adapter_class, adapter_for
    from known_speech.evaluation.organism.continuous import package_continuous
    from known_speech.evaluation.organism.continuous_data import write_bundle
    from known_speech.evaluation.organism.continuous_train import ContinuousTrainOptions, train_continuous
    from known_speech.evaluation.organism.delta import MANIFEST, OrganismDelta
    from known_speech.settings import bundled_smollm2_gguf, bundled_whisper_dir

    rows = list(load_dataset(str(spoken_dataset), "piper-en_US-joe-medium", split="train"))
    bundle = write_bundle(({"utterance_id": str(r["known_id"]), "split": "test" if k == 0 else "train",
                            "kind": "sentence", "text": r["prompt"], "waveform": waveform_of(r["audio"])}
                           for k, r in enumerate(rows)), tmp_path / "bundle", smollm2[1],
                          bundled_whisper_dir() / "model.bin", bundled_smollm2_gguf())
    assert bundle["utterances"] == 6 and bundle["splits"] == {"train": 5, "test": 1}
    record = train_continuous(ContinuousTrainOptions(
        bundle=str(tmp_path / "bundle"), gguf=str(bundled_smollm2_gguf()), out=str(tmp_path / "run"),
        minutes_projector=0.02, minutes_lora=0.02, batch_size=2, eval_every=1000, transcripts=1,
        transcript_tokens=3, device="cpu"))
    assert record["finished"] and record["steps"] >= 2
    assert {h["stage"] for h in record["history"]} == {"projector", "lora"}
    assert all(np.isfinite(h["loss"]) for h in record["history"])
    assert all(np.isfinite(v) for k, v in record["evaluations"][-1].items() if k not in ("step", "stage"))
    delta = tmp_path / "whisper-smollm2"
    manifest = package_continuous(tmp_path / "run", delta)
    assert manifest["kind"] == "continuous" and sum(p.stat().st_size for p in delta.iterdir()) < 25 * 2**20
    assert adapter_for(str(delta)) == "whisper-smollm2"
    adapter = adapter_class("whisper-smollm2")(str(delta))
    speech = adapter.prepare(rows[2], "speech")
    assert speech.length == 379 and adapter.describe()["delta"]["files"] == manifest["files"]
    assert isinstance(adapter.generate_batch([speech], 3)[0], str)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(delta, corrupt)
    data = bytearray((corrupt / "projector_and_rows.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (corrupt / "projector_and_rows.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="projector_and_rows.safetensors: sha256 .* corrupt"):
        OrganismDelta.resolve(str(corrupt))
    foreign = tmp_path / "foreign"
    shutil.copytree(delta, foreign)
    changed = json.loads((foreign / MANIFEST).read_text())
    changed["backbone"]["gguf_sha256"] = "0" * 64
    (foreign / MANIFEST).write_text(json.dumps(changed))
    with pytest.raises(ValueError, match="trained on the GGUF with sha256 000000000000"):
        adapter_class("whisper-smollm2")(str(foreign))


def test_the_shipped_delta_loads_by_name_and_answers_from_text(spoken_dataset, tmp_path):
    """The shipped run 1 (known_speech/data/whisper-smollm2) by name, offline: its files match its manifest, it is
    the Voxtral instance the `voxtral` row traces (379 positions for a spoken prompt), and from text it recalls as the
    backbone does (run 1 on the first 24 Known prompts: 4, "Rome" among them; the backbone 5). From speech it does
    not yet recall (docs/whisper_smollm2.md): no bound is set on that."""
    from known_speech.evaluation.adapter import adapter_class, adapter_for
    from known_speech.evaluation.filtering import run_filter
    from known_speech.evaluation.records import load_records

    assert adapter_for("whisper-smollm2") == "whisper-smollm2"
    adapter = adapter_class("whisper-smollm2")("whisper-smollm2")
    described = adapter.describe()
    assert described["delta"]["name"] == "whisper-smollm2" and described["whisper"]["model_bin_sha256"]
    assert described["delta"]["training"]["steps"] == 800
    from datasets import load_dataset

    spoken = load_dataset(str(spoken_dataset), "piper-en_US-joe-medium", split="train")[0]
    assert adapter.prepare(spoken, "speech").length == 379
    rows = run_filter(adapter, load_records("text", None)[:24], "text", tmp_path / "text.jsonl", max_new_tokens=8)
    recalled = {k for k, row in rows.items() if row.match != "none"}
    print(f"whisper-smollm2 T→T on the first 24: {sorted(recalled)}")
    assert len(recalled) >= 3 and 21 in recalled and rows[21].answer == "Rome"
