"""The paper's alignment path: CTC segmentation, spoken-form normalisation to a CTC alphabet, HuBERT
units with de-duplication, and alignment QC. HuBERT-large-ft and mHuBERT weights are Hub-only, so their
real `from_pretrained` code runs here on tiny random models the tests save."""

import json
import re

import numpy as np
import pytest
import torch
from datasets import load_dataset
from transformers import (
    HubertConfig,
    HubertForCTC,
    HubertModel,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
)

from known_speech.builders.align.ctc import CTCAligner, segment_words, to_model_alphabet
from known_speech.builders.align.qc import compare_alignments, span_iou
from known_speech.unit_tokenizer import load_unit_tokenizer
from known_speech.units import dedup_span, deduplicate
from known_speech.cli import main as cli_main
from known_speech.spans import AlignedWord, frame_span
from known_speech.spoken import verbalise

# the character vocabulary of facebook/hubert-large-ls960-ft
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4,
         **{c: i + 5 for i, c in enumerate("ETAONIHSRDLUMWCFGYPBVK'XJQZ")}}
CHARS = [t for t, _ in sorted(VOCAB.items(), key=lambda kv: kv[1])]
TINY_HUBERT = dict(hidden_size=32, num_hidden_layers=11, num_attention_heads=2, intermediate_size=64,
                   conv_dim=(16, 16, 16), conv_stride=(10, 8, 8), conv_kernel=(10, 8, 8),
                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def _true_path(words, gap=2, lead=3, tail=4):
    """Frames: each token twice (a blank between repeats), `gap` delimiter frames between words."""
    path, truth = [VOCAB["<pad>"]] * lead, []
    for index, word in enumerate(words):
        start = len(path)
        for k, token in enumerate(word.token_ids):
            path += [token, token]
            if k + 1 < len(word.token_ids) and word.token_ids[k + 1] == token:
                path.append(VOCAB["<pad>"])
        truth.append((start, len(path)))
        if index + 1 < len(words):
            path += [VOCAB["|"]] * gap
    return path + [VOCAB["<pad>"]] * tail, truth


@pytest.mark.parametrize("prompt", ["LGA 775 is made by Intel", "Kyōto University is located in Japan",
                                    "AT&T Park is owned by", "The 1980s began in"])
def test_ctc_segmentation_recovers_a_known_segmentation_exactly(prompt):
    words = to_model_alphabet(verbalise(prompt), VOCAB)
    path, truth = _true_path(words, gap=1 + len(prompt) % 3)
    log_probs = np.full((len(path), len(VOCAB)), np.log(1e-4))
    log_probs[np.arange(len(path)), path] = np.log(1 - 1e-4 * (len(VOCAB) - 1))
    spans = segment_words(log_probs, words, 0.02, VOCAB["<pad>"], VOCAB["|"], CHARS)
    assert [(round(start / 0.02), round(end / 0.02)) for start, end, _ in spans] == truth
    assert all(confidence > 0.99 for _, _, confidence in spans)


def test_normalisation_to_the_ctc_alphabet():
    texts = lambda prompt: [w.text for w in to_model_alphabet(verbalise(prompt), VOCAB)]  # noqa: E731
    assert texts("LGA 775") == ["LGA", "SEVEN", "HUNDRED", "SEVENTY|FIVE"]
    assert texts("the 1980s") == ["THE", "NINETEEN", "EIGHTIES"]
    assert texts("Kyōto & Røed, 50%") == ["KYOTO", "AND", "ROED", "FIFTY", "PERCENT"]


def test_normalisation_round_trips_the_hard_prompts_of_the_real_set(known_records):
    hard = {"digits": [r for r in known_records if re.search(r"\d", r.prompt)],
            "ampersand": [r for r in known_records if "&" in r.prompt],
            "non-ascii": [r for r in known_records if not r.prompt.isascii()]}
    assert {name: len(records) for name, records in hard.items()} == {"digits": 77, "ampersand": 6, "non-ascii": 9}
    for record in (r for records in hard.values() for r in records):
        spoken = verbalise(record.prompt)
        words = to_model_alphabet(spoken, VOCAB)
        assert all(set(w.text) <= set(VOCAB) for w in words), record.prompt
        # every written word is voiced by at least one model word, in order: the map back is complete
        assert sorted({w.written_index for w in words}) == list(range(len(spoken.written_words))), record.prompt
        back = [spoken.written_words[i].text for i in dict.fromkeys(w.written_index for w in words)]
        assert back == [w.text for w in spoken.written_words]


@pytest.fixture(scope="module")
def tiny_ctc_model(tmp_path_factory):
    """A random HubertForCTC with the character vocabulary, saved as a Hub checkpoint would be."""
    folder = tmp_path_factory.mktemp("hubert-ctc")
    (folder / "vocab.json").write_text(json.dumps(VOCAB))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, do_normalize=True, return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    HubertForCTC(HubertConfig(vocab_size=len(VOCAB), pad_token_id=0, **{**TINY_HUBERT, "num_hidden_layers": 2,
                                                                         "conv_stride": (5, 4, 2), "conv_kernel": (10, 4, 2)})).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_unit_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mhubert")
    torch.manual_seed(0)
    HubertModel(HubertConfig(**TINY_HUBERT)).save_pretrained(folder)
    np.save(folder / "centroids.npy", np.random.default_rng(0).normal(size=(500, 32)).astype(np.float32))
    return folder


@pytest.mark.slow
def test_ctc_aligner_from_pretrained_aligns_a_real_piper_utterance(tiny_ctc_model):
    from known_speech.audio import to_mono_16k
    from known_speech.builders.tts import create_engine

    spoken = verbalise("LGA 775 is created by Intel")
    synthesis = create_engine("piper").synthesize(spoken)
    samples = to_mono_16k(synthesis.samples, synthesis.sample_rate)
    words = CTCAligner(str(tiny_ctc_model)).align(spoken, samples)
    assert [w.word for w in words] == ["LGA", "775", "is", "created", "by", "Intel"]
    duration = len(samples) / 16_000
    assert all(0 <= w.start_s <= w.end_s <= duration + 1e-6 for w in words)
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(words, words[1:]))


def test_dedup_by_hand():
    units, starts = deduplicate([3, 3, 7, 7, 7, 2, 3, 3])
    assert units.tolist() == [3, 7, 2, 3] and starts.tolist() == [0, 2, 5, 6]
    assert dedup_span(starts, 3, 6, 8) == (1, 3)  # frames 3-5 lie in runs 7,7,7 (1) and 2 (2)
    assert dedup_span(starts, 0, 1, 8) == (0, 1)
    assert dedup_span(starts, 5, 8, 8) == (2, 4)


def test_unit_tokenizer_is_the_nearest_centroid_of_the_layer(tiny_unit_tokenizer):
    tokenizer = load_unit_tokenizer(tiny_unit_tokenizer)
    assert tokenizer.quantizer.kind == "kmeans" and tokenizer.rate_hz == 25.0
    audio = np.random.default_rng(1).normal(scale=0.1, size=16_000).astype(np.float32)
    units = tokenizer.encode(audio)
    assert len(units) == 25  # 1 s at 25 Hz
    features = tokenizer.features(audio).numpy()
    centroids = np.load(tiny_unit_tokenizer / "centroids.npy")
    expected = ((features[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert units.tolist() == expected.tolist()


def test_qc_of_a_shifted_alignment():
    exact = [AlignedWord("Big", 0, 3, 0.0, 0.2, 1.0), AlignedWord("Ben", 4, 7, 0.3, 0.6, 1.0)]
    shifted = [AlignedWord("Big", 0, 3, 0.05, 0.25, 1.0), AlignedWord("Ben", 4, 7, 0.3, 0.8, 1.0)]
    qc = compare_alignments(exact, shifted, (4, 7))
    assert qc.mean_boundary_error_ms == pytest.approx(75.0) and qc.max_boundary_error_ms == pytest.approx(200.0)
    assert qc.subject_iou == pytest.approx(0.6) and not qc.flagged
    late = [exact[0], AlignedWord("Ben", 4, 7, 0.5, 1.2, 1.0)]
    assert compare_alignments(exact, late, (4, 7)).flagged  # IoU 0.1/0.9
    assert span_iou((0, 1), (2, 3)) == 0.0


@pytest.mark.slow
def test_build_with_ctc_aligner_and_units_then_show_alignment(tmp_path, known_records, tiny_ctc_model, tiny_unit_tokenizer):
    by_id = {r.known_id: r for r in known_records}
    source = tmp_path / "source.json"
    source.write_text(json.dumps([by_id[i].to_dict() for i in (21, 65)]))
    out = tmp_path / "known-speech"
    assert cli_main(["build", "--out", str(out), "--source", str(source), "--workers", "1", "--aligner", "tts",
                     "--aligner", "ctc", "--aligner", "whisper", "--ctc-model", str(tiny_ctc_model),
                     "--unit-tokenizer", str(tiny_unit_tokenizer)]) == 0
    rows = load_dataset(str(out), "piper-en_US-joe-medium", split="train")
    for row in rows:
        assert [e["method"] for e in row["estimated_alignments"]] == ["ctc", "whisper"]
        span = next(s for s in row["speech_token_spans"] if s["tokenizer"] == "hubert-25hz")
        assert len(span["units"]) == pytest.approx(row["duration_s"] * 25, abs=1)
        assert (span["frame_start"], span["frame_end"]) == frame_span(*row["subject_time_span"], 25.0)
        _, starts = deduplicate(span["units"])
        expected = dedup_span(starts, span["frame_start"], min(span["frame_end"], len(span["units"])), len(span["units"]))
        assert (span["dedup_start"], span["dedup_end"]) == expected
    stats = json.loads((out / "build_stats.json").read_text())["piper-en_US-joe-medium"]["alignment_qc"]
    assert set(stats) == {"ctc", "whisper"}
    png = tmp_path / "fig3.png"
    assert cli_main(["show-alignment", "65", "--dataset", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
    svg = tmp_path / "fig3.svg"  # matplotlib writes each text as a comment beside its glyphs
    assert cli_main(["show-alignment", "65", "--dataset", str(out), "--out", str(svg)]) == 0
    text = svg.read_text()
    for label in ("power (dB/Hz)", "subject, tts", "subject, ctc", "hubert-25hz", "(25 Hz frames)", "(50 Hz frames)"):
        assert f"<!-- {label}" in text or label in text, label
    assert cli_main(["show-alignment", "4", "--dataset", str(out)]) == 2


def test_alignment_figure_fits_every_word_label_inside_its_box():
    """Short words of fast speech: "continent" is wider than its box level, "in" and "the" would touch; each
    label is fitted (upright, or smaller) inside its word's box, clear of its edges."""
    from known_speech.builders.align.plot import alignment_figure

    prompt = "Mount Everest is located in the continent of"
    times = [0.1, 0.4, 0.85, 0.97, 1.4, 1.47, 1.53, 1.71, 1.9]  # word boundaries (s)
    words, position = [], 0
    for word, start, end in zip(prompt.split(), times, times[1:]):
        position = prompt.index(word, position)
        words.append({"word": word, "char_start": position, "char_end": position + len(word), "start_s": start,
                      "end_s": end, "score": 1.0})
        position += len(word)
    row = {"known_id": 7, "prompt": prompt, "subject": "Mount Everest", "subject_char_span": [0, 13],
           "alignment": {"method": "tts"}, "words": words, "estimated_alignments": [], "speech_token_spans": []}
    figure = alignment_figure(row, np.random.default_rng(0).normal(0, 0.1, 16_000 * 2).astype(np.float32))
    renderer, axis = figure.canvas.get_renderer(), figure.axes[1]
    labels = {text.get_text(): text for text in axis.texts}
    assert list(labels) == prompt.split()
    assert labels["continent"].get_fontsize() < labels["Mount"].get_fontsize() and labels["the"].get_rotation() == 90
    for word in words:
        box = labels[word["word"]].get_window_extent(renderer)
        left, right = (axis.transData.transform((x, 0))[0] for x in (word["start_s"], word["end_s"]))
        assert left + 2 <= box.x0 and box.x1 <= right - 2, word["word"]
