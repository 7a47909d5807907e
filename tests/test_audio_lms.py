"""transformers' audio-text models through the one table-driven adapter (evaluation/audio_lms.py, audio_lm.py), each on
a tiny random model of its real class with its real processor (tests/audio_lm_models.py), on the real Piper build:
our ids and embeddings are the model's own, the subject's frames land where the processor's length formula puts
them, a trace passes its self-checks, `known-speech trace` and `check-model` run (and check-model names a missing
audio marker), and the filter generates through the model's own `generate`, batched."""

from __future__ import annotations

import base64
import importlib
import json
import math
import shutil

import numpy as np
import pytest
import torch
from datasets import load_dataset

from known_speech.cli import main as cli_main
from known_speech.evaluation.adapter import adapter_class, adapter_for
from known_speech.evaluation.filtering import filter_settings
from known_speech.tracing import CausalTracer, TraceOptions

VOICE = "piper-en_US-joe-medium"
FAMILIES = ("qwen2-audio", "audio-flamingo-3", "glm-asr", "qwen2.5-omni", "qwen3-omni", "voxtral")
RATE_HZ = {"qwen2-audio": 25.0, "audio-flamingo-3": 25.0, "glm-asr": 12.5, "qwen2.5-omni": 25.0, "voxtral": 12.5}


@pytest.fixture(scope="module")
def rows(spoken_dataset):
    return {row["known_id"]: row for row in load_dataset(str(spoken_dataset), VOICE, split="train")}


PROCESSORS = {"qwen2-audio": "Qwen2AudioProcessor", "audio-flamingo-3": "AudioFlamingo3Processor",
              "glm-asr": "GlmAsrProcessor", "qwen2.5-omni": "Qwen2_5OmniProcessor", "qwen3-omni": "Qwen3OmniMoeProcessor",
              "voxtral": "VoxtralProcessor"}
# mel frames of speech: 1-999, and around the 30 s chunks of Voxtral (and Qwen3-Omni's 1 s ones)
MEL_FRAMES = (*range(1, 1000), *range(2995, 3006), 6000, 6001)


def own_count(family: str, mel_frames: int) -> int:
    """The number of audio positions as each processor's own code computes it (none of them reads its instance)."""
    import transformers

    processor = getattr(transformers, PROCESSORS[family])
    if family == "voxtral":  # mistral-common counts the tokens of the audio it pads to 30 s (audio.py: encode_audio)
        from mistral_common.tokens.tokenizers.audio import (Audio, AudioConfig, AudioEncoder, AudioSpectrogramConfig,
                                                            SpecialAudioIDs)

        from .audio_lm_models import TEKKEN_AUDIO

        config = {**TEKKEN_AUDIO, "encoding_config": AudioSpectrogramConfig(**TEKKEN_AUDIO["audio_encoding_config"])}
        del config["audio_encoding_config"]
        encoder = AudioEncoder(AudioConfig(**config), SpecialAudioIDs(24, 25, None, None, None))
        tokens = encoder.encode_audio(Audio(np.zeros(mel_frames * 160, np.float32), 16_000, "wav")).tokens
        return tokens.count(24)
    if family == "qwen2-audio":
        return (((mel_frames - 1) // 2 + 1) - 2) // 2 + 1  # processing_qwen2_audio.py:88, inline there
    if family in ("audio-flamingo-3", "glm-asr"):
        return int(processor._get_audio_token_length(None, torch.tensor(mel_frames)))
    return int(importlib.import_module(processor.__module__)._get_feat_extract_output_lengths(torch.tensor(mel_frames)))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_table_s_length_formula_is_the_processor_s(family):
    layout = adapter_class(family).family.layout
    assert [layout.count(n) for n in MEL_FRAMES] == [own_count(family, n) for n in MEL_FRAMES]
    spans = layout.spans_s(layout.count(999))
    assert (spans[1:, 0] >= spans[:-1, 1] - 1e-9).all()  # in order, within the audio (padded to 30 s for Voxtral)
    assert spans[-1, 1] == 30.0 if layout.padded else spans[-1, 1] <= 10.0


def golden_subject(family: str, num_positions: int, start_s: float, end_s: float) -> tuple[int, int]:
    """[start, end) among the audio positions of the subject's time span, worked out by hand per family."""
    if family == "qwen3-omni":  # 1 s chunks of 13 positions, 80 ms each, the 13th cut at the chunk's end
        spans = [(c + 0.08 * j, min(c + 0.08 * (j + 1), c + 1.0)) for c, j in (divmod(k, 13) for k in range(num_positions))]
        inside = [k for k, (a, b) in enumerate(spans) if a < end_s and start_s < b]
        return inside[0], inside[-1] + 1
    rate = RATE_HZ[family]
    return math.floor(start_s * rate), min(num_positions, math.ceil(end_s * rate))


def own_inputs(adapter, family: str, content: dict, waveform=None):
    """The model's own processor on the prompt: the base format, or its chat template with the audio (or text)."""
    processor = adapter.processor
    if family == "voxtral" and waveform is not None:  # the audio as a file, the dataset's FLAC (base64), not our WAV
        from known_speech.audio import encode_flac

        content = {"type": "audio", "base64": base64.b64encode(encode_flac(waveform)).decode("ascii")}
    if family == "qwen2-audio":
        text = "<|audio_bos|><|AUDIO|><|audio_eos|>" if waveform is not None else content["text"]
        return processor(text=text, audio=[waveform] if waveform is not None else None, sampling_rate=16_000,
                         return_tensors="pt")
    return processor.apply_chat_template([{"role": "user", "content": [content]}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True, return_tensors="pt",
                                         processor_kwargs={"sampling_rate": 16_000})


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_inputs_are_the_model_s_own_and_a_trace_passes_its_self_checks(family, tiny_audio_lm, rows):
    from known_speech.audio import waveform_of

    folder = tiny_audio_lm(family)
    assert adapter_for(str(folder)) == family
    adapter = adapter_class(family)(str(folder))
    row = rows[21]
    waveform = waveform_of(row["audio"])
    ours = adapter.prepare(row, "speech")
    own = own_inputs(adapter, family, {"type": "audio", "audio": waveform}, waveform)
    own_ids = own["input_ids"][0].tolist()
    assert adapter.tokenizer.convert_tokens_to_ids(ours.pieces) == own_ids
    with torch.no_grad():
        forward = adapter.model(**own, output_hidden_states=True)
    # the embeddings entering the first decoder layer in the model's own forward (its merge, its positions)
    torch.testing.assert_close(ours.inputs_embeds, forward.hidden_states[0][0], rtol=0, atol=0)
    with torch.no_grad():  # and the decoder on our embeddings alone predicts as the model's whole forward does
        logits = adapter.decoder(inputs_embeds=ours.inputs_embeds[None]).logits
    torch.testing.assert_close(logits[0, -1], forward.logits[0, -1], rtol=1e-4, atol=1e-4)

    # golden: the processor's own length formula on the mel frames of the waveform, the subject's span by hand
    audio_id = adapter.tokenizer.convert_tokens_to_ids(adapter.processor.audio_token)
    first = own_ids.index(audio_id)
    mel_frames = ours.metadata["mel_frames"]
    count = own_count(family, mel_frames)
    assert own_ids[first:first + count] == [audio_id] * count and audio_id not in own_ids[first + count:]
    if adapter.family.layout.padded:  # mistral-common pads the audio to whole 30 s chunks
        assert mel_frames == 3000 * math.ceil(len(waveform) / 480_000)
    else:
        assert abs(mel_frames - len(waveform) / 160) <= 2  # 100 mel frames a second
    start, end = golden_subject(family, count, *row["subject_time_span"])
    assert ours.subject_range == (first + start, first + end)
    # a position is linked to the word at its centre: those centred in the subject's time are its tokens (the
    # first subject position may be centred in the word before, as it only has to overlap the subject)
    centres = adapter.family.layout.spans_s(count).mean(axis=1)
    subject_start, subject_end = row["subject_time_span"]
    inside = [first + k for k in range(start, end) if subject_start <= centres[k] < subject_end]
    assert inside and all(ours.text_token_of_position[p] in range(*ours.subject_text_range) for p in inside)

    # the written prompt in the same format, as the model's own processor builds it
    text = adapter.prepare(row, "text")
    assert text.input_ids == own_inputs(adapter, family, {"type": "text", "text": row["prompt"]})["input_ids"][0].tolist()
    assert text.answer == ours.answer and text.text_tokens == ours.text_tokens
    # the template's tokens after the prompt (or the audio) stand for the prompt's end, in both modalities
    last = len(text.text_tokens) - 1
    assert text.text_token_of_position[-1] == ours.text_token_of_position[-1] == last
    assert ours.answer.piece == ("ĠRome" if family == "qwen2-audio" else "Rome")  # a chat reply starts right away

    # a trace of the clean run's top prediction (probable enough that the self-checks discriminate)
    answer = int(forward.logits[0, -1].argmax())
    result = CausalTracer(adapter.decoder).trace(inputs_embeds=ours.inputs_embeds, subject_range=ours.subject_range,
                                                 answer_id=answer, options=TraceOptions(samples=2, window=2))
    assert result.high_score == pytest.approx(float(forward.logits[0, -1].softmax(-1)[answer]), rel=1e-4)
    assert result.high_score > 0.05 and result.scores["mlp"].shape == (ours.length, 2)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_trace_and_check_model_run_and_check_model_names_a_missing_audio_marker(family, tiny_audio_lm, spoken_dataset,
                                                                             tmp_path, capsys):
    folder = str(tiny_audio_lm(family))
    trace = ["trace", "--model", folder, "--adapter", family, "--modality", "speech", "--dataset", str(spoken_dataset),
             "--voice-config", VOICE, "--unfiltered", "--limit", "1", "--kinds", "hidden", "--samples", "2",
             "--no-control", "--out", str(tmp_path / "results")]
    assert cli_main(trace) == 0
    assert "1 of 1 items traced, 0 failed" in capsys.readouterr().out
    check = ["check-model", folder, "--adapter", family, "--dataset", str(spoken_dataset), "--config", VOICE]
    assert cli_main(check) == 0
    out = capsys.readouterr().out
    for line in ("PASS  speech: audio", "PASS  speech: restoration", "PASS  text: ids", "PASS  speech: answer token"):
        assert line in out, out
    # the same model with the audio marker gone from its prompt: the audio would never reach the model
    if family == "qwen2-audio":
        broken = check + ["--adapter-option", "base_format=<|audio_bos|><|audio_eos|>"]
    elif family == "voxtral":  # its tokenizer file without the audio token: the chat encoding marks audio with nothing
        shutil.copytree(folder, tmp_path / "no-audio")
        tekken = json.loads((tmp_path / "no-audio" / "tekken.json").read_text(encoding="utf-8"))
        tekken["special_tokens"][24]["token_str"] = "<SPECIAL_24>"
        (tmp_path / "no-audio" / "tekken.json").write_text(json.dumps(tekken), encoding="utf-8")
        broken = ["check-model", str(tmp_path / "no-audio"), *check[2:]]
    else:
        from transformers import AutoProcessor

        shutil.copytree(folder, tmp_path / "no-audio")
        processor = AutoProcessor.from_pretrained(folder)  # its chat template, with the audio item rendering nothing
        processor.chat_template = processor.chat_template.replace(processor.audio_token, "")
        processor.save_pretrained(tmp_path / "no-audio")
        broken = ["check-model", str(tmp_path / "no-audio"), *check[2:]]
    assert cli_main(broken) == 1
    captured = capsys.readouterr()
    assert "FAIL  speech: input" in captured.out and "has no audio marker" in captured.out
    assert "check-model failed: speech: input" in captured.err


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_filter_generates_through_the_model_s_own_generate_batched(family, tiny_audio_lm, rows):
    from known_speech.audio import waveform_of

    adapter = adapter_class(family)(str(tiny_audio_lm(family)))
    records = [rows[known_id] for known_id in (21, 0, 3)]
    if adapter.family.layout.padded:  # every prompt under 30 s fills one chunk: one of two chunks needs padding
        waveform = waveform_of(records[1]["audio"])
        records[1] = dict(records[1], audio={"array": np.tile(waveform, math.ceil(480_000 / len(waveform)) + 1),
                                             "sampling_rate": 16_000})
    # 188.5 hops of audio: 188 mel frames alone, 189 by the mask of a padded batch (feature_extraction_whisper.py:334-340)
    records[0] = dict(records[0], audio={"array": waveform_of(records[0]["audio"])[:188 * 160 + 80], "sampling_rate": 16_000})
    inputs = [adapter.prepare(record, "speech") for record in records]
    assert len({item.length for item in inputs}) > 1  # the batch needs padding
    single = [adapter.generate(item, 4) for item in inputs]
    assert adapter.generate_batch(inputs, 4) == single and all(single)
    generation = filter_settings(adapter, "speech", VOICE, 4)["model_generation"]
    thinker = family.endswith("omni")
    assert generation["generate"].endswith(".thinker.generate" if thinker else "ForConditionalGeneration.generate")
    assert generation["output"] == "text" and json.dumps(generation)
