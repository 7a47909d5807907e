"""Items built in worker processes (or in this one), each with its own loaded models."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator, Sequence

from known_speech.source import KnownRecord

from .cache import ItemOutcome
from .item import ItemBuilder
from .options import BuildOptions

__all__ = ["build_outcomes"]

_worker: ItemBuilder | None = None
_worker_setup_error: str | None = None


def _init_worker(options: BuildOptions) -> None:
    # an exception here would make the pool respawn workers forever: keep it for the first item
    global _worker, _worker_setup_error
    logging.basicConfig(level=logging.WARNING)
    try:
        _worker = ItemBuilder(options)
    except Exception as err:
        _worker_setup_error = f"{type(err).__name__}: {err}"


def _build_in_worker(record: KnownRecord) -> tuple[ItemOutcome, bytes | None]:
    if _worker is None:  # a set-up failure is the build's, not the item's: abort, cache nothing
        raise RuntimeError(f"a build worker could not load its models: {_worker_setup_error}")
    return _worker.build(record)


def build_outcomes(pending: Sequence[KnownRecord], options: BuildOptions) -> Iterator[tuple[ItemOutcome, bytes | None]]:
    """(outcome, FLAC bytes) of every pending record, in completion order."""
    if not pending:
        return
    if options.workers == 1 or len(pending) == 1:
        builder = ItemBuilder(options)
        yield from (builder.build(record) for record in pending)
        return
    # spawn, not fork: onnxruntime and CTranslate2 thread pools do not survive a fork
    context = multiprocessing.get_context("spawn")
    with context.Pool(options.workers, initializer=_init_worker, initargs=(options,)) as pool:
        yield from pool.imap_unordered(_build_in_worker, pending, chunksize=4)
