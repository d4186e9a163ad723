"""Keep the server's long-lived objects out of the cyclic garbage collector's full scans.

A full (generation 2) collection walks every object the collector tracks: the web stack, SQLAlchemy,
the tokenizer's wrappers and, with inference threads, the model's modules. Under steady load one ran
every ~3 s and paused the event loop 54-117 ms each time (MiniLM, inference processes, c=32;
bench/gc_pauses.py records every collection through gc.callbacks), so every request in flight then
waited that long: a few percent of all requests. Freezing what exists once the service is ready moves it
to the permanent generation, which collections skip; the objects of each request are still collected as
before (full scans of 2.7-3.5 ms). On the drifting 2-core machine it was measured on, throughput and p99
at c=32 did not move outside the noise in four interleaved runs (p99 medians 283 against 284 ms, where
other causes set the tail); the pause it removes is certain, the share of the p99 it frees depends on
the machine.

Process-wide, so it is the `freeze_heap` setting: on for `textguard serve`, off where the app shares its
process with other work (the test suite's in-process servers), which would otherwise keep every frozen
object's reference cycles for good.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def freeze_long_lived() -> None:
    """Move every object alive now to the permanent generation (called once the first model is in)."""
    gc.freeze()


def refreeze_once_released(
    released: Callable[[], object | None], timeout_s: float = 60.0, every_s: float = 1.0
) -> bool:
    """After a hot swap: give everything frozen back to the collector, then freeze again only once
    `released()` (a weak reference to the replaced model) says it is gone, collecting every `every_s`
    until then (each a full scan). Freezing while anything still held the old model would keep its
    reference cycles for good; if it is not released within `timeout_s` the heap stays unfrozen (full
    scans pause as they did before freezing, but nothing leaks). True if frozen again.

    Unfrozen again before every collection: after two swaps in quick succession, the first one's
    freeze may have caught the second replaced model while it was still held."""
    deadline = time.monotonic() + timeout_s
    while True:
        gc.unfreeze()
        gc.collect()
        if released() is None:
            gc.freeze()
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)
