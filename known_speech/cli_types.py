"""Value types and defaults of the command line's arguments: each refuses a bad value in one line, before anything
loads (argparse's own error)."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

__all__ = ["positive_int", "non_negative_int", "positive_float", "mix", "state_layers", "entity_sources", "kinds",
           "key_value", "defaults"]


def _number(kind, lowest, what):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < lowest or (lowest == 0 and kind is float and value == 0):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what}")
        return value

    return parse


positive_int = _number(int, 1, "a positive integer")
non_negative_int = _number(int, 0, "an integer >= 0")
positive_float = _number(float, 0, "a positive number")


def mix(text: str) -> dict[str, float]:
    from known_speech.evaluation.organism.sequences import parse_mix

    return parse_mix(text)


def state_layers(text: str) -> str:
    from known_speech.evaluation.organism.options import TrainOptions

    try:
        return TrainOptions("", "", state_layers=text).state_layers
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--state-layers {text!r}: ")) from None


def entity_sources(text: str) -> str:
    from known_speech.evaluation.organism.options import TrainOptions

    try:
        return TrainOptions("", "", entity_sources=text).entity_sources
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--entity-sources {text!r}: ")) from None


def kinds(text: str) -> tuple[str, ...]:
    from known_speech.tracing.result import KINDS

    kinds = tuple(kind.strip() for kind in text.split(","))
    if not set(kinds) <= set(KINDS):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list of {','.join(KINDS)}")
    return kinds


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def defaults(options_class) -> dict:
    """The defaults of an options dataclass, without building one (the CLI shows what the library uses)."""
    return {f.name: f.default for f in fields(options_class) if f.default is not MISSING}
