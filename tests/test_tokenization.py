"""Conformance of tokenization: the ids we build are the ones each model's own code builds.

Spirit LM's code tokenizes Meta's prompt strings with transformers 4.x's slow `LlamaTokenizer`
(add_bos_token=True). The reference here is that library itself, transformers 4.46 in .venv-reference,
run on tokenizers the tests train in the formats releases ship: SentencePiece BPE with byte fallback
and the markers once as user-defined pieces and once as added tokens, legacy true and false; GPT-2-style
and Llama-3-style byte-level BPE. (The speech units: test_units.py.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from known_speech.evaluation.prompt_input import text_model_input
from known_speech.evaluation.spiritlm import TEXT_MARKER, load_spiritlm_tokenizer, speech_model_input, speech_prompt
from known_speech.spans import frame_span
from known_speech.tracing.prompts import answer_token, encode, is_blank_piece
from known_speech.units import deduplicate, interleave_expressive

from .release_formats import (
    SPIRITLM_MARKERS,
    train_sentencepiece,
    write_gpt2_tokenizer,
    write_llama3_tokenizer,
    write_llama_tokenizer,
)

REFERENCE_PYTHON = Path(__file__).resolve().parents[1] / ".venv-reference" / "bin" / "python"
RECORD_IDS = (21, 425, 12, 324)  # "Roman Republic" -> Rome; "Kyōto" (bytes); "1980s" (split digits); iPhone
# (name, how it is built, does Meta's call / the tokenizer put BOS first)
VARIANTS = {
    "sp-pieces-legacy": ("pieces", {}),
    "sp-pieces-nonlegacy": ("pieces", {"legacy": False}),
    "sp-added-special-legacy": ("added", {"legacy": True}),
    "sp-added-special-nonlegacy": ("added", {"legacy": False}),
    "sp-added-plain-legacy-unset": ("added", {"special": False}),
    "sp-added-additional-nonlegacy": ("added", {"legacy": False, "additional_special": True}),
    "gpt2-bpe": ("gpt2", {}),
    "llama3-bpe": ("llama3", {}),
}

_REFERENCE = r"""
import json, sys
from transformers import GPT2Tokenizer, LlamaTokenizer, PreTrainedTokenizerFast
jobs, out = json.load(sys.stdin), {}
for name, (folder, kind, strings) in jobs.items():
    if kind == "sentencepiece":  # Meta's call: spiritlm/model/spiritlm_model.py:168
        tokenizer = LlamaTokenizer.from_pretrained(folder, add_bos_token=True, add_eos_token=False)
    elif kind == "gpt2":  # the slow class, from vocab.json and merges.txt
        tokenizer = GPT2Tokenizer.from_pretrained(folder)
    else:  # Llama-3 has no slow class: the 4.x fast class is the reference
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    out[name] = {"ids": [tokenizer(s)["input_ids"] for s in strings], "class": type(tokenizer).__name__,
                 "bos": tokenizer.bos_token_id}
json.dump(out, sys.stdout)
"""


def _synthetic_speech(record: dict, frames_per_char: int = 2) -> tuple[dict, np.ndarray]:
    """The record with evenly timed words (25 Hz frames, 2 per character, 0.2 s pauses) and 25 Hz units that
    change every 3 frames, so that de-duplication matters."""
    words, cursor, time = [], 0, 0.0
    for word in record["prompt"].split(" "):
        start = record["prompt"].index(word, cursor)
        duration = frames_per_char * len(word) / 25.0
        words.append({"word": word, "char_start": start, "char_end": start + len(word), "start_s": time,
                      "end_s": time + duration, "score": 1.0})
        cursor, time = start + len(word), time + duration + 0.2
    subject_start, subject_end = record["subject_char_span"]
    covering = [w for w in words if w["char_start"] < subject_end and subject_start < w["char_end"]]
    num_frames = int(round(time * 25))
    units = (np.arange(num_frames) // 3 * 37 + 11) % 500
    return ({**record, "words": words, "subject_time_span": [covering[0]["start_s"], covering[-1]["end_s"]]},
            units.astype(np.int64))


@pytest.fixture(scope="module")
def records(known_records):
    by_id = {r.known_id: r for r in known_records}
    return [{**by_id[i].to_dict(), "subject_char_span": list(by_id[i].subject_char_span)} for i in RECORD_IDS]


@pytest.fixture(scope="module")
def tokenizer_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    plain = train_sentencepiece(root / "plain")
    with_pieces = train_sentencepiece(root / "pieces", SPIRITLM_MARKERS)
    folders = {}
    for name, (kind, options) in VARIANTS.items():
        folder = root / name
        if kind == "gpt2":
            folders[name] = (write_gpt2_tokenizer(folder, SPIRITLM_MARKERS), "gpt2")
        elif kind == "llama3":
            folders[name] = (write_llama3_tokenizer(folder, SPIRITLM_MARKERS), "llama3")
        else:
            model = with_pieces if kind == "pieces" else plain
            folders[name] = (write_llama_tokenizer(folder, model, SPIRITLM_MARKERS, kind, **options), "sentencepiece")
    return folders


def _meta_strings(records: list[dict]) -> list[str]:
    """Meta's exact prompt strings for text and for speech (units of `_synthetic_speech`), with and
    without the attribute after them."""
    strings = []
    for record in records:
        text = TEXT_MARKER + record["prompt"]
        speech = speech_prompt(interleave_expressive(_synthetic_speech(record)[1]))
        strings += [text, f"{text} {record['attribute']}", speech, f"{speech} {record['attribute']}"]
    return strings


def _plain_strings(records: list[dict]) -> list[str]:
    """What `hf-text` feeds a text LM: the prompt alone, and with the attribute."""
    return [s for record in records for s in (record["prompt"], f"{record['prompt']} {record['attribute']}")]


@pytest.fixture(scope="module")
def reference(tokenizer_folders, records):
    """ids transformers 4.46 gives for every variant and string."""
    if not REFERENCE_PYTHON.exists():
        pytest.fail(f"{REFERENCE_PYTHON} is missing: run bash scripts/setup.sh (it makes .venv-reference)")
    jobs = {name: (str(folder), kind, _meta_strings(records) + _plain_strings(records))
            for name, (folder, kind) in tokenizer_folders.items()}
    done = subprocess.run([str(REFERENCE_PYTHON), "-c", _REFERENCE], input=json.dumps(jobs), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_meta_prompt_ids_equal_transformers4(variant, tokenizer_folders, reference, records):
    folder, kind = tokenizer_folders[variant]
    tokenizer = load_spiritlm_tokenizer(folder)
    expected = reference[variant]
    if kind == "sentencepiece":
        assert expected["class"] == "LlamaTokenizer"
    for string, ids in zip(_meta_strings(records), expected["ids"]):
        encoding = encode(tokenizer, string)
        assert encoding.ids == ids, (string, encoding.pieces, tokenizer.convert_ids_to_tokens(ids))
        assert encoding.bos == (kind != "gpt2") == (ids[0] == expected["bos"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hf_text_prompts_with_the_tokenizer_s_own_special_tokens_equal_transformers4(variant, tokenizer_folders,
                                                                                    reference, records):
    """`hf-text` loads the tokenizer with `transformers` and encodes the whole prompt with its default special
    tokens: BOS where it adds one (Llama-2 and Llama-3 style), none for GPT-2 style."""
    from transformers import AutoTokenizer

    folder, kind = tokenizer_folders[variant]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected = reference[variant]["ids"][len(_meta_strings(records)):]
    for string, ids in zip(_plain_strings(records), expected):
        encoding = encode(tokenizer, string)
        assert encoding.ids == ids, (string, encoding.pieces)
        assert encoding.bos == (kind != "gpt2")
    model_input = text_model_input(tokenizer, records[0])
    assert model_input.prompt_text == records[0]["prompt"] and model_input.bos == (kind != "gpt2")


def test_the_variants_disagree_where_meta_s_call_is_fragile(tokenizer_folders):
    """What the reference comparison above protects: the first pieces of "[Text]The ..." differ by format."""
    prompt = "[Text]The capital of Roman Republic is"

    def first(variant):
        return encode(load_spiritlm_tokenizer(tokenizer_folders[variant][0]), prompt).pieces[:3]

    assert first("sp-pieces-legacy") == ["<s>", "▁", "[Text]"]  # user-defined piece: a lone dummy prefix
    assert first("sp-added-special-legacy")[:2] == ["<s>", "[Text]"]
    assert first("sp-added-special-legacy")[2].startswith("▁")  # legacy: every chunk gets the dummy prefix
    assert first("sp-added-special-nonlegacy")[:3] == ["<s>", "▁", "[Text]"]  # [Text] is no special token...
    assert first("sp-added-additional-nonlegacy")[:2] == ["<s>", "[Text]"]  # ...unless listed as one
    assert not first("sp-added-additional-nonlegacy")[2].startswith("▁")  # non-legacy: "The", not "▁The"
    assert first("gpt2-bpe")[0] == "[Text]" and first("llama3-bpe")[0] == "<|begin_of_text|>"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_text_input_subject_positions_and_answer_token(variant, tokenizer_folders, records):
    tokenizer = load_spiritlm_tokenizer(tokenizer_folders[variant][0])
    for record in records:
        model_input = text_model_input(tokenizer, record, prefix=TEXT_MARKER)
        assert model_input.prompt_text == TEXT_MARKER + record["prompt"]
        assert model_input.input_ids == encode(tokenizer, model_input.prompt_text).ids
        start, end = model_input.subject_range
        subject_text = "".join(model_input.text_tokens[slice(*model_input.subject_text_range)])
        assert record["subject"] in subject_text.replace("▁", " ")
        assert [model_input.text_token_of_position[p] for p in (start, end - 1)] == \
            [model_input.subject_text_range[0], model_input.subject_text_range[1] - 1]
        assert "".join(model_input.text_tokens).replace("▁", " ").strip() == record["prompt"]
        answer = model_input.answer
        assert not is_blank_piece(answer.piece) and answer.id not in model_input.input_ids[:1]
        decoded = tokenizer.decode([answer.id]).strip()
        assert decoded and record["attribute"].startswith(decoded), (answer, decoded)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_speech_input_positions_map_to_units_and_words(variant, tokenizer_folders, records):
    tokenizer = load_spiritlm_tokenizer(tokenizer_folders[variant][0])
    for base in records:
        record, units = _synthetic_speech(base)
        text = text_model_input(tokenizer, record, prefix=TEXT_MARKER)
        tokens = interleave_expressive(units)
        model_input = speech_model_input(tokenizer, record, text, units, tokens)
        dedup, run_starts = deduplicate(units)
        hubert = [p for p, piece in enumerate(model_input.pieces) if piece.startswith("[Hu")]
        assert [model_input.pieces[p] for p in hubert] == [f"[Hu{u}]" for u in dedup]
        assert model_input.pieces[-1] == "[Text]" and model_input.bos == (variant != "gpt2-bpe")
        # the subject: exactly the unit runs overlapping its frames
        frame_start, frame_end = frame_span(*record["subject_time_span"], 25.0)
        run_ends = np.append(run_starts[1:], units.size)
        inside = [p for p, a, b in zip(hubert, run_starts, run_ends) if a < frame_end and b > frame_start]
        assert model_input.subject_range == (inside[0], inside[-1] + 1)
        # every unit position links to a text token of the word spoken at its midpoint (in a pause: of a
        # word next to it)
        words = record["words"]
        for position, a, b in zip(hubert, run_starts, run_ends):
            midpoint = (a + b) / 2 / 25.0
            inside = [w for w in words if w["start_s"] <= midpoint < w["end_s"]]
            after = next((i for i, w in enumerate(words) if w["start_s"] > midpoint), len(words))
            candidates = inside or words[max(0, after - 1):after + 1]
            token = model_input.text_tokens[model_input.text_token_of_position[position]].strip()
            assert any(token in w["word"] for w in candidates), (token, [w["word"] for w in candidates])
        assert model_input.text_token_of_position[-1] == len(model_input.text_tokens) - 1
        # the answer: the attribute's first word piece after "[Text]", skipping a dummy-prefix "▁"
        assert model_input.answer.id == answer_token(tokenizer, model_input.prompt_text, record["attribute"]).id
        assert not is_blank_piece(model_input.answer.piece)


def test_an_attribute_without_a_word_piece_is_refused_naming_the_record(tokenizer_folders, records):
    tokenizer = load_spiritlm_tokenizer(tokenizer_folders["sp-pieces-legacy"][0])
    with pytest.raises(ValueError, match="known_id=21: field 'attribute'"):
        text_model_input(tokenizer, {**records[0], "attribute": "   "}, prefix=TEXT_MARKER)
