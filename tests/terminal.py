"""A process on a pseudo-terminal, for what the command line does only when a person is there."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

import pytest

from tests.processes import end


class Terminal:
    """`argv` with a pty as its stdin, stdout and stderr; what it showed is collected in `output`."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        primary, secondary = pty.openpty()
        self._fd = primary
        self._shown = bytearray()
        self.process = subprocess.Popen(
            self.argv, stdin=secondary, stdout=secondary, stderr=secondary, env=dict(env), start_new_session=True
        )
        os.close(secondary)

    @property
    def output(self) -> str:
        return self._shown.decode("utf-8", "replace")

    def _read(self, wait: float) -> bool:
        """Collect what is shown within `wait` seconds; False once the terminal is closed."""
        ready, _, _ = select.select([self._fd], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self._fd, 4096)
        except OSError:  # the process ended and closed its side
            return False
        self._shown += chunk
        return bool(chunk)

    def wait_for(self, text: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline or not self._read(0.1):
                pytest.fail(f"gave up waiting for {text!r}; the terminal showed:\n{self.output}")

    def send(self, text: str) -> None:
        os.write(self._fd, text.encode())

    def wait(self, *, timeout: float) -> int:
        """The exit status, once the process has ended and everything it showed is read."""
        deadline = time.monotonic() + timeout
        while self._read(0.1) and self.process.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"{' '.join(self.argv)} did not end within {timeout:.0f}s:\n{self.output}")
        while self._read(0.1):  # what it showed last
            pass
        return self.process.wait(timeout=10)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        end(self.process)
        with contextlib.suppress(OSError):
            os.close(self._fd)
