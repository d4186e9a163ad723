"""Server processes take turns through their first load: one holder of the turn at a time."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from textguard.service.startup_turns import ENV, StartupTurn


def _process_taking_the_turn(lock: Path, then: str, blocking: bool = False) -> subprocess.Popen[str]:
    """Another process: takes the turn on `lock` (awaiting it, or `acquire_blocking` as a `--workers N`
    process does before its event loop serves), prints "acquired", then runs `then`."""
    take = "turn.acquire_blocking()" if blocking else "asyncio.run(turn.acquire())"
    code = (
        "import asyncio, sys, time\n"
        "from textguard.service.startup_turns import StartupTurn\n"
        f"turn = StartupTurn(sys.argv[1]); {take}\n"
        "print('acquired', flush=True)\n" + then
    )
    return subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("blocking", [False, True])
def test_a_second_process_waits_for_the_turn_until_the_first_releases_it(
    tmp_path: Path, blocking: bool
) -> None:
    lock = tmp_path / "startup.lock"
    first = StartupTurn(str(lock))

    async def scenario() -> None:
        first.acquire_blocking()
        await asyncio.wait_for(first.acquire(), timeout=5)  # a turn this process holds: at once
        # Another process, as the server processes are.
        waiter = _process_taking_the_turn(lock, then="", blocking=blocking)
        await asyncio.sleep(1.0)
        assert waiter.poll() is None, "the second process took the turn while the first held it"
        first.release()
        first.release()  # idempotent
        out, _ = waiter.communicate(timeout=30)
        assert waiter.returncode == 0 and out.strip() == "acquired"

    asyncio.run(scenario())


def test_a_process_that_dies_holding_the_turn_gives_it_up(tmp_path: Path) -> None:
    lock = tmp_path / "startup.lock"
    holder = _process_taking_the_turn(lock, then="time.sleep(60)\n")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "acquired"
    holder.kill()
    holder.wait()
    asyncio.run(asyncio.wait_for(StartupTurn(str(lock)).acquire(), timeout=10))


def test_no_turns_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert StartupTurn.from_environment() is None


def test_the_asgi_entry_imports_nothing_heavy_before_the_turns() -> None:
    """uvicorn imports the entry module in every process before the turns are decided: the web stack
    and the model's libraries load only once a process has its turn (`app_from_env`)."""
    code = (
        "import sys, textguard.service.asgi\n"
        "print(sorted(m for m in ('fastapi', 'torch', 'tokenizers', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
