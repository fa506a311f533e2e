"""An exclusive lock on a file that every process on this machine respects (stdlib only).

`flock` on POSIX, `msvcrt.locking` on Windows: the system drops it when its holder closes the file or
ends, however it ends, so a crash never leaves it held. Both lock per open file, so two holders in one
process exclude each other too. It is taken by attempts that never block, with a short sleep between,
so the event loop never waits on another process, and a wait that is cancelled or gives up holds nothing.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

logger = logging.getLogger(__name__)


class FileLockTimeout(TimeoutError):
    """Another holder kept the lock for the whole wait."""


def _try_lock(fd: int) -> bool:
    """Take the lock now if it is free; False when another holder has it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # the first byte, from the position open() left at 0
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):  # someone else holds it
                return False
            raise
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    """The lock on `path` (made if missing, never removed), given up after `timeout` seconds of waiting."""

    def __init__(self, path: Path, *, timeout: float, interval: float = 0.01) -> None:
        self.path = path
        self.timeout = timeout
        self._interval = interval

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the lock while the block runs.

        Raises (on entering, nothing held):
            FileLockTimeout: another holder kept it for `timeout` seconds.
            OSError: the file cannot be made or opened (a read-only directory), or not locked there.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await self._take(fd)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)  # would drop the lock by itself too

    async def _take(self, fd: int) -> None:
        if _try_lock(fd):
            return
        logger.info("%s is held by another process; waiting up to %g s for it", self.path, self.timeout)
        deadline = anyio.current_time() + self.timeout
        while True:
            await anyio.sleep(self._interval)
            if _try_lock(fd):
                return
            if anyio.current_time() >= deadline:
                raise FileLockTimeout(f"{self.path} stayed locked for {self.timeout:g} s")
