"""Commands forked off the loop's thread (orchestrator_service/spawn.py): the loop keeps
turning while a fork is under way, and the process comes back through asyncio's transport
with its output and its exit status, reaped once, by the child watcher."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_service import reaper, spawn


class Collect(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.exited = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        self.out += data

    def process_exited(self) -> None:
        self.exited.set_result(None)


@pytest.fixture(autouse=True)
def fresh_watcher() -> Iterator[None]:
    yield
    asyncio.set_child_watcher(None)  # type: ignore[arg-type]  # a closed loop's reaper: gone


async def run(argv: list[str], tmp: Path) -> tuple[int | None, bytes]:
    transport, proto = await spawn.spawn(Collect, argv, cwd=tmp, env={"X": "from-env"})
    await asyncio.wait_for(proto.exited, 30)
    code = transport.get_returncode()
    transport.close()
    return code, bytes(proto.out)


@pytest.mark.parametrize("pidfds", [True, False])
def test_output_exit_status_cwd_and_env_come_back(tmp_path: Path, pidfds: bool) -> None:
    async def main() -> list[tuple[int | None, bytes]]:
        if pidfds:
            assert reaper.install()
        return await asyncio.gather(*(run(
            ["/bin/sh", "-c", f'echo "$X $(pwd)"; echo err >&2; exit {n}'], tmp_path)
            for n in range(20)))

    results = asyncio.run(main())
    assert [code for code, _ in results] == list(range(20))
    for _, out in results:
        assert sorted(out.decode().split("\n")) == ["", "err", f"from-env {tmp_path}"]


def test_the_loop_turns_while_a_fork_is_under_way(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    forked_on: list[int] = []
    real = subprocess.Popen

    def slow_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        forked_on.append(threading.get_ident())
        time.sleep(0.5)  # an exec from a slow disk, as the loop would otherwise feel it
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", slow_popen)

    async def main() -> tuple[int, int | None]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        code, _ = await run(["/bin/true"], tmp_path)
        ticker.cancel()
        return ticks, code

    loop_thread = threading.get_ident()
    ticks, code = asyncio.run(main())
    assert code == 0
    assert forked_on and forked_on[0] != loop_thread
    assert ticks >= 10, f"the loop turned {ticks} times during a 0.5 s fork"


def test_a_command_that_cannot_start_raises_and_leaves_no_transport(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            await run([str(tmp_path / "missing")], tmp_path)

    asyncio.run(main())


def test_a_cancel_while_the_thread_forks_ends_the_process_it_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def slow_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        time.sleep(0.3)  # the cancel arrives meanwhile
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(subprocess, "Popen", slow_popen)

    async def main() -> None:
        task = asyncio.create_task(spawn.spawn(Collect, ["/bin/sleep", "30"], cwd=tmp_path,
                                               env={}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    deadline = time.monotonic() + 10
    while not (made and made[0].returncode is not None) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert made, "the fork never happened"
    assert made[0].returncode == -9, "the abandoned process was not killed and reaped"


class Exits:
    """Stands in for the transport: records on which thread its exit was delivered."""

    def __init__(self) -> None:
        self.delivered = asyncio.get_running_loop().create_future()

    def _process_exited(self, code: int) -> None:
        self.delivered.set_result((code, threading.get_ident()))


async def test_an_exit_reaches_the_loop_from_its_own_thread_or_another() -> None:
    loop = asyncio.get_running_loop()
    here = Exits()
    spawn._exited(1, 3, here, loop)  # type: ignore[arg-type]  # the pidfd watcher's case
    assert await asyncio.wait_for(here.delivered, 10) == (3, threading.get_ident())
    there = Exits()
    # A watcher on a thread of its own (where the kernel has no pidfds): still on the loop.
    worker = threading.Thread(target=spawn._exited, args=(1, 4, there, loop))
    worker.start()
    assert await asyncio.wait_for(there.delivered, 10) == (4, threading.get_ident())
    worker.join(10)
