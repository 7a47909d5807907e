"""mistral-common's tokenizers (Voxtral's tekken.json) with character offsets, for prompt strings that its chat
encoding writes out.

transformers' `MistralCommonBackend` gives no offsets (tokenization_mistral_common.py:415-418) and encodes a string
as text, so a control token written out ("[INST]") is not that token there. The model's own code never encodes such
a string: mistral-common builds the ids from the conversation, the control tokens as ids and each text chunk
encoded on its own (mistral_common/tokens/tokenizers/instruct.py: `InstructTokenizerV2.encode_user_message`,
`InstructTokenizerV3._encode_content_chunk`). `encode_with_offsets` reads a string as that encoding writes it out
(`decode` keeping special tokens) back into the same ids: each special token's string becomes its id, the text
between them is encoded by the tekken BPE, and each id gets the characters its bytes cover. The tests compare its
ids with the processor's own chat encoding. Everything else is the backend's.
"""

from __future__ import annotations

import re

from known_speech.tracing.prompts import Encoding

__all__ = ["MistralChatTokenizer"]


class MistralChatTokenizer:
    """A `MistralCommonBackend` (tekken) that encodes the strings its chat encoding decodes to, with offsets."""

    is_fast = False  # no transformers fast backend: check-model compares ids with the processor's own instead

    def __init__(self, backend):
        self.backend = backend
        self.tekken = backend.tokenizer.instruct_tokenizer.tokenizer
        if not hasattr(self.tekken, "id_to_byte_piece"):
            raise ValueError(f"{type(self.tekken).__name__}: only tekken tokenizers (tekken.json) are supported")
        special_ids = backend.all_special_ids
        self.special_ids = dict(zip(backend.convert_ids_to_tokens(special_ids), special_ids))
        alternatives = "|".join(re.escape(token) for token in sorted(self.special_ids, key=len, reverse=True))
        self._specials = re.compile(f"({alternatives})")

    def __getattr__(self, name: str):
        if name == "backend":  # not yet set (a copy being built)
            raise AttributeError(name)
        return getattr(self.backend, name)

    def audio_marker(self) -> int | None:
        """The id mistral-common's chat encoding marks audio with; None where the tokenizer file has no audio section
        or no audio token (mistral_common/tokens/tokenizers/mistral.py: `load_audio_encoder`)."""
        encoder = self.backend.tokenizer.instruct_tokenizer.audio_encoder
        return None if encoder is None else encoder.special_ids.audio

    def encode_with_offsets(self, text: str) -> Encoding:
        ids: list[int] = []
        spans: list[tuple[int, int] | None] = []
        offset = 0
        for part in self._specials.split(text):
            if part in self.special_ids:
                ids.append(self.special_ids[part])
                spans.append(None)
            elif part:
                part_ids = self.tekken.encode(part, bos=False, eos=False)
                ids.extend(part_ids)
                spans.extend(self._char_spans(part, part_ids, offset))
            offset += len(part)
        bos = self.backend.bos_token_id
        return Encoding(text, ids, self.backend.convert_ids_to_tokens(ids), spans,
                        bos=bos is not None and bool(ids) and ids[0] == bos)

    def _char_spans(self, part: str, ids: list[int], offset: int) -> list[tuple[int, int]]:
        """[start, end) in the string of the characters whose bytes each id's bytes overlap (a character spelt in
        several byte pieces: each of them covers it)."""
        char_of_byte = [index for index, character in enumerate(part) for _ in character.encode("utf-8")]
        spans, start = [], 0
        for token_id in ids:
            end = start + len(self.tekken.id_to_byte_piece(token_id))
            spans.append((offset + char_of_byte[start], offset + char_of_byte[end - 1] + 1))
            start = end
        if start != len(char_of_byte):
            raise ValueError(f"the tekken pieces of {part!r} are not its bytes")
        return spans
