"""The file lock against real other processes: it keeps them out while held, and never stays held."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from kartra_mcp.tools.file_lock import FileLock, FileLockTimeout
from tests.processes import file_lock_held, local_env, run

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the other process uses flock")

_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("busy")
else:
    print("free")
"""


def _seen_by_another_process(path: Path) -> str:
    done = run([sys.executable, "-c", _PROBE, str(path)], env=local_env(), timeout=30)
    assert done.returncode == 0, done.explain()
    return done.stdout.strip()


async def test_while_held_another_process_cannot_take_it_and_afterwards_it_can(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "audit.sqlite3.cap-lock", timeout=1)
    async with lock.held():
        during = _seen_by_another_process(lock.path)
    assert (during, _seen_by_another_process(lock.path)) == ("busy", "free")


async def test_waiting_for_another_process_gives_up_after_the_timeout(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "cap-lock", timeout=0.2)
    with file_lock_held(lock.path), pytest.raises(FileLockTimeout):
        async with lock.held():
            pytest.fail("the lock was taken while another process held it")


async def test_it_is_taken_once_the_other_process_lets_go(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "cap-lock", timeout=30)
    with file_lock_held(lock.path) as release:
        release()
        async with lock.held():
            assert _seen_by_another_process(lock.path) == "busy"


async def test_a_cancelled_wait_or_holder_leaves_it_free(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "cap-lock", timeout=30)
    with anyio.move_on_after(0.1):
        async with lock.held():
            await anyio.sleep(30)
    assert _seen_by_another_process(lock.path) == "free"
    with file_lock_held(lock.path) as release:
        with anyio.move_on_after(0.1):
            async with lock.held():
                pytest.fail("the lock was taken while another process held it")
        release()
    async with lock.held():
        assert _seen_by_another_process(lock.path) == "busy"


async def test_a_lock_file_that_cannot_be_made_raises_on_entering(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "missing-directory" / "cap-lock", timeout=1)
    with pytest.raises(FileNotFoundError):
        async with lock.held():
            pytest.fail("held without a file")
