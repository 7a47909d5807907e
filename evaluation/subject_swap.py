"""The subject swap: a spoken prompt with its subject's units (the adapter's span map) replaced by another prompt's
subject's units, the rest of the prompt as spoken.

Known-s2t counts a fact as recalled from speech when greedy generation names the attribute. A model can do that
from the spoken template alone: spirit-smollm2's run 6 answered "… follows the religion of" with "Islam" whoever
was named, and kept 15 of its 17 recalls when another subject's units took the subject's place. A recall that rests
on the subject's units is lost, or follows the swapped-in subject, so `filter --subject-swap` records the swapped
generation beside every fact recalled from speech.

The partner is the next prompt (by known_id, cyclically) of the same relation whose attribute differs, failing
that of any relation: the template stays, only the subject changes. Swapping splices unit ids, so it serves the
adapters whose speech input is discrete units (spiritlm, spirit-smollm2); an adapter that reads audio features is
refused.
"""

from __future__ import annotations

from collections.abc import Iterator

from .model_input import ModelInput

__all__ = ["swap_partner", "with_subject_of", "swapped_inputs", "check_swappable"]


def swap_partner(record: dict, records: list[dict]) -> dict | None:
    """The record whose subject is swapped in: the next of the same relation with another attribute, else the next
    of any relation with another attribute, else None."""
    ordered = sorted(records, key=lambda r: int(r["known_id"]))
    place = next((k for k, r in enumerate(ordered) if int(r["known_id"]) > int(record["known_id"])), 0)
    following = ordered[place:] + ordered[:place]
    others = [r for r in following if r["attribute"] != record["attribute"]]
    return next((r for r in others if r["relation_id"] == record["relation_id"]), others[0] if others else None)


def check_swappable(adapter_cls: type, modality: str) -> None:
    """Refuse, before a model loads, a swap that cannot be made: on text, or for an adapter that reads audio."""
    from .audio_lm import AudioLMAdapter

    if modality != "speech":
        raise ValueError("--subject-swap: only with --modality speech (it swaps the subject's units)")
    if issubclass(adapter_cls, AudioLMAdapter):
        raise ValueError(f"--subject-swap: the {adapter_cls.name} adapter reads speech as audio features, not as unit "
                         "ids; the swap splices unit ids (spiritlm, spirit-smollm2)")


def with_subject_of(model_input: ModelInput, partner: ModelInput) -> ModelInput:
    """`model_input` with the ids of its subject's positions replaced by `partner`'s subject's (their counts may
    differ)."""
    (start, end), (their_start, their_end) = model_input.subject_range, partner.subject_range
    ids = model_input.input_ids[:start] + partner.input_ids[their_start:their_end] + model_input.input_ids[end:]
    return model_input.with_ids(ids, (start, start + their_end - their_start))


def swapped_inputs(adapter, records: list[dict], partners: list[dict]) -> Iterator[tuple[dict, ModelInput, dict | None,
                                                                                    ModelInput | None]]:
    """Per record: its speech input, its `swap_partner` among `partners` and the input with that partner's subject
    units (None, None without a partner); each record's input is prepared once, however many records it partners."""
    prepared: dict[int, ModelInput] = {}

    def prepare(record: dict) -> ModelInput:
        key = int(record["known_id"])
        if key not in prepared:
            prepared[key] = adapter.prepare(record, "speech")
        return prepared[key]

    for record in records:
        own, partner = prepare(record), swap_partner(record, partners)
        yield record, own, partner, with_subject_of(own, prepare(partner)) if partner else None
