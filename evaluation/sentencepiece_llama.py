"""transformers 4.x's slow `LlamaTokenizer`, as Meta's Spirit LM code loads it, with character offsets.

Spirit LM's reference code (facebookresearch/spiritlm, spiritlm/model/spiritlm_model.py:168) tokenizes with
`LlamaTokenizer.from_pretrained(path, add_bos_token=True, add_eos_token=False)`: the SentencePiece-backed
class of transformers 4.x. transformers 5 converts tokenizer.model into a `tokenizers` pipeline instead,
whose ids differ from it exactly where a Spirit LM prompt is fragile: markers stored as SentencePiece
user-defined pieces lose the lone "▁" the slow class emits before them, and `legacy` defaults to False
(the slow class: True), which turns "[Text]The" from "▁The" into "The". This class keeps the 4.x rules
(split on added tokens with their strip flags, SentencePiece per chunk with or without the dummy prefix,
the non-legacy "▁" prefix, BOS/EOS) and takes each piece's characters from SentencePiece's own offsets.
The tests compare it with transformers 4.46's `LlamaTokenizer` on tokenizers they train.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from known_speech.tracing.prompts import Encoding

__all__ = ["SentencePieceLlamaTokenizer", "AddedToken"]

SPIECE_UNDERLINE = "▁"


@dataclass(frozen=True)
class AddedToken:
    """An added token of the tokenizer config (transformers' `AddedToken` fields that change tokenization)."""

    content: str
    id: int
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    special: bool = False


def _content(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


class SentencePieceLlamaTokenizer:
    """`encode_with_offsets(text)` gives the ids transformers 4.x's slow `LlamaTokenizer` gives for `text`."""

    is_fast = False

    def __init__(self, folder: str | Path, add_bos_token: bool = True, add_eos_token: bool = False):
        import sentencepiece as spm

        folder = Path(folder)
        model_file = folder / "tokenizer.model"
        if not model_file.exists():
            raise ValueError(f"{folder}: no tokenizer.model (the SentencePiece model of a Llama-family release)")
        config = _read_json(folder / "tokenizer_config.json")
        special_map = _read_json(folder / "special_tokens_map.json")
        self.folder = folder
        self.legacy = True if config.get("legacy") is None else bool(config["legacy"])
        self.add_prefix_space = bool(config.get("add_prefix_space", True))
        self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(str(model_file))
        if not self.legacy:  # 4.x LlamaTokenizer.get_spm_processor: the dummy prefix off
            from sentencepiece import sentencepiece_model_pb2

            proto = sentencepiece_model_pb2.ModelProto.FromString(self.sp.serialized_model_proto())
            proto.normalizer_spec.add_dummy_prefix = False
            self.sp = spm.SentencePieceProcessor()
            self.sp.LoadFromSerializedProto(proto.SerializeToString())

        def special(name: str, default: str | None) -> str | None:
            value = special_map.get(name, config.get(name, default))
            return _content(value)

        self.bos_token, self.eos_token = special("bos_token", "<s>"), special("eos_token", "</s>")
        self.unk_token, self.pad_token = special("unk_token", "<unk>"), special("pad_token", None)
        additional = special_map.get("additional_special_tokens", config.get("additional_special_tokens")) or []
        self.additional_special_tokens = [_content(token) for token in additional]
        self.added: dict[str, AddedToken] = {}
        for index, entry in (config.get("added_tokens_decoder") or {}).items():
            self.added[entry["content"]] = AddedToken(
                entry["content"], int(index), bool(entry.get("lstrip")), bool(entry.get("rstrip")),
                bool(entry.get("single_word")), bool(entry.get("special")))
        for content, index in _read_json(folder / "added_tokens.json").items():
            self.added.setdefault(content, AddedToken(content, int(index),
                                                      special=content in self.additional_special_tokens))
        for token in self.all_special_tokens:  # 4.x adds the special tokens as added tokens at their vocab id
            if token not in self.added:
                index = self.sp.piece_to_id(token)
                if token != self.unk_token and index == self.sp.unk_id():
                    index = self.vocab_size + len([t for t in self.added.values() if t.id >= self.vocab_size])
                self.added[token] = AddedToken(token, index, special=True)
        self._by_id = {token.id: token for token in self.added.values()}
        from transformers.tokenization_python import Trie  # the trie the slow tokenizers split with

        self._trie = Trie()
        for token in self.added:
            self._trie.add(token)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs) -> "SentencePieceLlamaTokenizer":
        return cls(folder, **kwargs)

    # -- vocabulary ---------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def __len__(self) -> int:
        return max([self.vocab_size - 1, *self._by_id]) + 1

    @property
    def all_special_tokens(self) -> list[str]:
        """4.x: the special-token attributes and additional_special_tokens (not every special added token)."""
        tokens = [self.bos_token, self.eos_token, self.unk_token, self.pad_token, *self.additional_special_tokens]
        return list(dict.fromkeys(token for token in tokens if token))

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id_of(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id_of(self.eos_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id_of(self.unk_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id_of(self.pad_token)

    def convert_tokens_to_ids(self, tokens: str | list[str]):
        if isinstance(tokens, str):
            return self.added[tokens].id if tokens in self.added else self.sp.piece_to_id(tokens)
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int]):
        if isinstance(ids, int):
            return self._by_id[ids].content if ids in self._by_id else self.sp.id_to_piece(ids)
        return [self.convert_ids_to_tokens(int(i)) for i in ids]

    # -- encoding -----------------------------------------------------------------------------------
    def _split(self, text: str) -> list[tuple[str, int, bool]]:
        """(chunk, start in text, is an added token): the trie split and the added tokens' strip rules."""
        chunks, start = [], 0
        for part in self._trie.split(text):
            chunks.append([part, start, part in self.added])
            start += len(part)
        for i, (part, _, is_added) in enumerate(chunks):
            if not is_added:
                continue
            token = self.added[part]
            left = chunks[i - 1] if i > 0 else None
            right = chunks[i + 1] if i < len(chunks) - 1 else None
            if token.rstrip and right and not right[2]:
                stripped = right[0].lstrip()
                right[1] += len(right[0]) - len(stripped)
                right[0] = stripped
            if token.lstrip and left and not left[2]:
                left[0] = left[0].rstrip()
            if token.single_word and left and left[0] and left[0][-1] != " ":
                left[0] += part
                chunks[i][0] = ""
            elif token.single_word and right and right[0] and right[0][0] != " ":
                chunks[i][0] = part + right[0]
                right[0] = ""
        return [(part, start, is_added) for part, start, is_added in chunks if part]

    def _sentencepiece(self, chunk: str) -> list[tuple[int, str, int, int]]:
        """4.x `_tokenize` of one chunk: (id, piece, start, end) with character offsets into the chunk."""
        prefix = ""
        if not self.legacy and chunk.startswith((SPIECE_UNDERLINE, " ")):
            prefix = self.unk_token  # 4.x encodes unk_token + text and drops the unk pieces
        encoded = prefix + chunk
        proto = self.sp.encode(encoded, out_type="proto")
        byte_to_char = []
        for index, character in enumerate(encoded):
            byte_to_char.extend([index] * len(character.encode("utf-8")))
        byte_to_char.append(len(encoded))
        pieces = []
        for piece in proto.pieces:
            start, end = byte_to_char[piece.begin], byte_to_char[piece.end]
            if start == end and piece.piece.startswith("<0x") and start < len(encoded):
                end = start + 1  # a leading byte of a character spelt in several byte pieces
            pieces.append((piece.id, piece.piece, start - len(prefix), end - len(prefix)))
        if prefix:
            pieces = pieces[len(self.sp.encode(prefix, out_type=str)):]
        return pieces

    def encode_with_offsets(self, text: str) -> Encoding:
        shift = 0
        if not self.legacy and text:  # 4.x LlamaTokenizer.tokenize, legacy=False
            text_for_split = text.replace(SPIECE_UNDERLINE, " ")
            if self.add_prefix_space:
                text_for_split, shift = SPIECE_UNDERLINE + text_for_split, 1
        else:
            text_for_split = text
        ids, pieces, spans = [], [], []
        for chunk, start, is_added in self._split(text_for_split):
            if is_added:
                ids.append(self.added[chunk].id)
                pieces.append(chunk)
                spans.append((start, start + len(chunk)))
                continue
            for token_id, piece, begin, end in self._sentencepiece(chunk):
                ids.append(token_id)
                pieces.append(piece)
                spans.append((start + begin, start + end))
        if shift and len(pieces) > 1 and pieces[0] == SPIECE_UNDERLINE and pieces[1] in self.all_special_tokens:
            del ids[0], pieces[0], spans[0]
        spans = [(max(0, a - shift), max(0, b - shift)) for a, b in spans]
        spans = [span if span[0] < span[1] else None for span in spans]
        bos = self.add_bos_token and self.bos_token_id is not None
        if bos:
            ids, pieces, spans = [self.bos_token_id, *ids], [self.bos_token, *pieces], [None, *spans]
        if self.add_eos_token and self.eos_token_id is not None:
            ids, pieces, spans = [*ids, self.eos_token_id], [*pieces, self.eos_token], [*spans, None]
        return Encoding(text, ids, pieces, spans, bos=bos)

    def __call__(self, text: str, **_) -> dict:
        return {"input_ids": self.encode_with_offsets(text).ids}

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """SentencePiece text of runs of ordinary ids, added tokens as their content (4.x `_decode`)."""
        special_ids = {self.convert_tokens_to_ids(token) for token in self.all_special_tokens}
        parts, run = [], []
        for token_id in (int(i) for i in ids):
            if skip_special_tokens and token_id in special_ids:
                continue
            if token_id in self._by_id:
                if run:
                    parts.append(self.sp.decode(run))
                    run = []
                parts.append(self._by_id[token_id].content)
            else:
                run.append(token_id)
        if run:
            parts.append(self.sp.decode(run))
        return "".join(parts)
