"""Building a text-token input the way the model's own code does: the whole prompt string tokenized with
the tokenizer's default special tokens, the subject, the text tokens and the answer found on it."""

from __future__ import annotations

from known_speech.source import subject_start
from known_speech.tracing.prompts import AnswerToken, Encoding, answer_token, encode, tokens_overlapping

from .model_input import Modality, ModelInput

__all__ = ["text_model_input", "encoded_input", "prompt_tokens", "position_labels", "record_answer",
           "subject_chars", "subject_text_range"]


def text_model_input(tokenizer, record: dict, prefix: str = "", suffix: str = "", separator: str = " ") -> ModelInput:
    """The written prompt between optional strings (Spirit LM's "[Text]" before it; a chat template's turn
    around it), tokenized whole as the model's own code does; the subject and the text tokens are found
    through character offsets. Positions after the prompt stand, like its last token, for the prompt's end;
    `separator` goes between the prompt string and the attribute when the answer token is found."""
    prompt = record["prompt"]
    prompt_text = prefix + prompt + suffix
    encoding = encode(tokenizer, prompt_text)
    links, text_tokens, char_spans = prompt_tokens(encoding, len(prefix), len(prefix) + len(prompt))
    if suffix:
        end = max(p for p, link in enumerate(links) if link is not None)
        links = links[:end + 1] + [len(text_tokens) - 1] * (len(links) - end - 1)
    subject_start, subject_end = subject_chars(record)
    subject_positions = encoding.positions_overlapping(len(prefix) + subject_start, len(prefix) + subject_end)
    if not subject_positions:
        raise ValueError(f"known_id={record['known_id']}: field 'subject': no token of {prompt_text!r} covers it")
    return encoded_input(tokenizer, record, encoding, "text", subject_positions, links, text_tokens,
                         subject_text_range(record, char_spans), char_spans, separator=separator)


def encoded_input(tokenizer, record: dict, encoding: Encoding, modality: Modality, subject_positions: list[int],
                  links: list[int | None], text_tokens: list[str], text_subject: tuple[int, int],
                  text_char_spans: list[tuple[int, int]], metadata: dict | None = None,
                  separator: str = " ") -> ModelInput:
    """The ModelInput of an id-input model for `encoding`, the whole prompt string as the model's code
    tokenizes it; the answer token is found on that same string."""
    return ModelInput(
        known_id=int(record["known_id"]),
        modality=modality,
        subject_range=(subject_positions[0], subject_positions[-1] + 1),
        text_tokens=text_tokens,
        subject_text_range=text_subject,
        text_token_of_position=links,
        labels=position_labels(tokenizer, encoding),
        answer=record_answer(tokenizer, encoding.text, record, separator),
        prompt_text=encoding.text,
        bos=encoding.bos,
        input_ids=encoding.ids,
        pieces=encoding.pieces,
        text_char_spans=text_char_spans,
        metadata=metadata or {},
        answer_separator=separator,
    )


def prompt_tokens(encoding: Encoding, start: int, end: int) -> tuple[list[int | None], list[str], list[tuple[int, int]]]:
    """The ids of `encoding` inside characters [start, end): each position's text-token index (None
    outside), the text tokens (the characters each covers, so they join to the prompt; the leading bytes
    of a character spelt in byte pieces are empty), and their character spans relative to `start`."""
    links: list[int | None] = []
    tokens, spans = [], []
    for span in encoding.char_spans:
        if span is not None and start <= span[0] and span[1] <= end:
            links.append(len(tokens))
            tokens.append(encoding.text[span[0]:span[1]])
            spans.append((span[0] - start, span[1] - start))
        else:
            links.append(None)
    for index in range(len(tokens) - 1):
        if spans[index] == spans[index + 1]:
            tokens[index] = ""
    if not tokens:
        raise ValueError(f"no token of {encoding.text!r} lies inside characters [{start}, {end})")
    return links, tokens, spans


def position_labels(tokenizer, encoding: Encoding) -> list[str]:
    """Each position as text for figures; pieces that decode to nothing (a lone "▁") as themselves."""
    return [tokenizer.decode([token_id]) or piece for token_id, piece in zip(encoding.ids, encoding.pieces)]


def record_answer(tokenizer, prompt_text: str, record: dict, separator: str = " ") -> AnswerToken:
    try:
        return answer_token(tokenizer, prompt_text, record["attribute"], separator)
    except ValueError as err:
        raise ValueError(f"known_id={record['known_id']}: field 'attribute': {err}") from err


def subject_chars(record: dict) -> tuple[int, int]:
    """[start, end) of the subject in the prompt: the record's span, else the subject's first whole-word occurrence."""
    if record.get("subject_char_span"):
        start, end = record["subject_char_span"]
        return int(start), int(end)
    start = subject_start(record["prompt"], record["subject"])
    if start < 0:
        raise ValueError(f"known_id={record['known_id']}: field 'subject': {record['subject']!r} is not in the prompt "
                         f"as whole words")
    return start, start + len(record["subject"])


def subject_text_range(record: dict, char_spans: list[tuple[int, int]]) -> tuple[int, int]:
    """[start, end) of the text tokens overlapping the record's subject characters."""
    tokens = tokens_overlapping(char_spans, *subject_chars(record))
    if not tokens:
        raise ValueError(f"known_id={record['known_id']}: field 'subject_char_span': no text token inside it")
    return tokens[0], tokens[-1] + 1
