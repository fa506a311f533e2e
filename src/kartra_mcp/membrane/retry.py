"""When and how long to wait before sending a request again."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter.

    The delay before attempt `n + 1` is `base * 2**(n-1)` capped at `cap`, scaled into
    `[delay/2, delay]` by the jitter, or the server's `Retry-After` when it sends one (also capped).
    `jitter` and `sleep` are injected so tests neither wait nor depend on chance.
    """

    attempts: int = 4
    base: float = 0.25
    cap: float = 4.0
    jitter: Callable[[], float] = field(default=random.random)
    sleep: Callable[[float], Awaitable[None]] = field(default=anyio.sleep)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.cap)
        ceiling = min(self.cap, self.base * float(2 ** (attempt - 1)))
        return ceiling / 2 + ceiling / 2 * self.jitter()


NO_RETRY = RetryPolicy(attempts=1)
