"""Items built in worker processes (or in this one), each worker with its own loaded models.

A worker that dies (SIGKILL, the out-of-memory killer) breaks the pool; the items it may have been
building are then built again, each alone in a fresh worker, so that the one that kills its worker is
recorded as failed with that reason and no other item is blamed; the rest go on in a fresh pool.
Workers run under a data-memory limit, so a runaway allocation fails its item instead of the machine.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from known_speech.source import KnownRecord

from .cache import ItemOutcome
from .item import ItemBuilder
from .options import BuildOptions

__all__ = ["build_outcomes", "WORKER_DIED"]

logger = logging.getLogger(__name__)

WORKER_DIED = "worker process died while building this item (killed, e.g. by the out-of-memory killer)"

_worker: ItemBuilder | None = None
_worker_setup_error: str | None = None
_started = None  # a SimpleQueue of the known_ids this worker has started


def _init_worker(options: BuildOptions, started) -> None:
    # an exception here would break every pool: keep it for the first item, which reports it
    global _worker, _worker_setup_error, _started
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process ends the build
    logging.basicConfig(level=logging.WARNING)
    _started = started
    try:
        if options.item_memory_gb:
            limit = int(options.item_memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        _worker = ItemBuilder(options)
    except Exception as err:
        _worker_setup_error = f"{type(err).__name__}: {err}"


def _build_in_worker(record: KnownRecord) -> tuple[ItemOutcome, bytes | None]:
    if _worker is None:  # a set-up failure is the build's, not the item's: abort, cache nothing
        raise ValueError(f"a build worker could not load its models: {_worker_setup_error}")
    _started.put(record.known_id)
    return _worker.build(record)


def _drain(started) -> set[int]:
    ids = set()
    while not started.empty():
        ids.add(started.get())
    return ids


def _run_pool(records: Sequence[KnownRecord], options: BuildOptions, workers: int, context,
              done: set[int]) -> Iterator[tuple[ItemOutcome, bytes | None]]:
    """Outcomes of `records` from one pool; raises BrokenProcessPool with the started ids attached."""
    started = context.SimpleQueue()  # written through at once: a worker killed right after still told us
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(options, started)) as pool:
        pending = {pool.submit(_build_in_worker, record) for record in records}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    outcome = future.result()
                    done.add(outcome[0].known_id)
                    yield outcome
        except BrokenProcessPool as err:
            err.started = _drain(started) - done
            raise
        except KeyboardInterrupt:  # the items in hand finish (their workers ignore it), the rest are not started
            pool.shutdown(wait=True, cancel_futures=True)
            raise


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
    todo, done, fruitless = list(pending), set(), 0
    while todo:
        try:
            yield from _run_pool(todo, options, options.workers, context, done)
            return
        except BrokenProcessPool as err:
            suspects = [record for record in todo if record.known_id in err.started]
            fruitless = 0 if suspects else fruitless + 1
            if fruitless == 3:
                raise RuntimeError("build workers keep dying before they start an item") from err
            logger.warning("a build worker died; building %s again, each alone", [r.known_id for r in suspects])
            for record in suspects:
                try:
                    yield from _run_pool([record], options, 1, context, done)
                except BrokenProcessPool:
                    done.add(record.known_id)
                    yield ItemOutcome(record.known_id, "failed", stage="worker", reason=WORKER_DIED), None
            todo = [record for record in todo if record.known_id not in done]
