"""textguard.service.heap: freezing again after hot swaps never keeps a replaced model's reference cycles.

gc.freeze() is process-wide, so each check runs in a child process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

TWO_SWAPS = textwrap.dedent(
    """
    import gc, threading, time, weakref
    from textguard.service.heap import refreeze_once_released

    class Model:
        pass

    first, second = Model(), Model()
    first.me, second.me = first, second  # reference cycles: only the collector frees them
    gc.freeze()  # as at start-up: both models frozen
    first_gone, second_gone = weakref.ref(first), weakref.ref(second)
    outcomes = []
    def release(gone):
        outcomes.append(refreeze_once_released(gone, timeout_s=10, every_s=0.05))
    # The second swap's thread is already waiting when the first model is released and frozen again,
    # the second model still held; then the second model is released.
    waiting = threading.Thread(target=release, args=(second_gone,))
    waiting.start()
    time.sleep(0.2)
    del first
    release(first_gone)
    del second
    waiting.join()
    print(first_gone() is None, second_gone() is None, sorted(outcomes), gc.get_freeze_count() > 0)
    """
)

STILL_HELD = textwrap.dedent(
    """
    import gc, weakref
    from textguard.service.heap import refreeze_once_released

    class Model:
        pass

    held = Model()
    gc.freeze()
    print(refreeze_once_released(weakref.ref(held), timeout_s=0.2, every_s=0.05), gc.get_freeze_count())
    """
)


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_two_swaps_in_quick_succession_release_both_models_and_freeze_again() -> None:
    assert _run(TWO_SWAPS) == "True True [True, True] True"


def test_a_model_still_held_leaves_the_heap_unfrozen() -> None:
    assert _run(STILL_HELD) == "False 0"
