"""Finding the connection and keeping the catalog current while Membrane falters.

A start with a usable cache serves it at once and asks Membrane in the background. A start without
one asks within a short deadline; when Membrane does not answer, the server still starts, says why
every call fails and what to do, and keeps asking. Every failed attempt is tried again after a
capped, jittered wait until one succeeds; a change in the tools is announced through `notify`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from kartra_mcp.errors import (
    ConfigError,
    MembraneError,
    MembraneProtocolError,
    MembraneRateLimited,
    MembraneServerError,
    MembraneTransportError,
)
from kartra_mcp.membrane import Connection, MembraneClient, RetryPolicy
from kartra_mcp.tools.catalog import Catalog
from kartra_mcp.tools.connection import ConnectionMemory, resolve_connection

logger = logging.getLogger(__name__)

# Membrane is down or overloaded, not misconfigured: worth serving and asking again.
TRANSIENT: tuple[type[MembraneError], ...] = (
    MembraneTransportError,
    MembraneServerError,
    MembraneRateLimited,
    MembraneProtocolError,
)

# Attempts 1 s apart at first, then doubling up to a minute; `attempts` is unused here.
BACKOFF = RetryPolicy(base=1.0, cap=60.0)

Notify = Callable[[], Awaitable[None]]


class CatalogUpkeep:
    """Resolves the Kartra connection and fetches the catalog, now or in the background."""

    def __init__(
        self,
        client: MembraneClient,
        catalog: Catalog,
        *,
        connection_id: str | None,
        memory: ConnectionMemory | None,
        backoff: RetryPolicy = BACKOFF,
    ) -> None:
        self._client = client
        self.catalog = catalog
        self._configured = connection_id
        self._memory = memory
        self.backoff = backoff
        self.connection: Connection | None = None
        # Why no call can run yet, in words for the person; None once a connection is known.
        self.problem: str | None = None
        self.current = False  # the catalog has been fetched from Membrane since the start

    async def resolve(self) -> bool:
        """Ask Membrane which connection to use, and remember it; True when it is not the one served."""
        connection = await resolve_connection(self._client, self._configured)
        switched = self.catalog.use_connection(connection.id)
        self.connection = connection
        if self._memory is not None:
            self._memory.remember(connection)
        return switched

    async def sync(self) -> bool:
        """Resolve the connection and fetch its actions once; True when the tools changed."""
        switched = await self.resolve()
        changed = await self.catalog.refresh()
        self.problem = None
        self.current = True
        return changed or switched

    async def start(self, deadline: float) -> None:
        """Serve the cache if there is one; else try Membrane for at most `deadline` seconds.

        Only a Membrane that is down or silent is waited out; a configuration it rejects stops the start.
        """
        if self.catalog.load_cache():
            return
        reason = f"Membrane at {self._client.base_url} did not answer within {deadline:g} s"
        with anyio.move_on_after(deadline):
            try:
                await self.sync()
                return
            except TRANSIENT as exc:
                reason = self._reason(exc)
        self.problem = self._unreachable(reason)
        logger.error("%s", self.problem)

    async def keep_current(self, notify: Notify) -> None:
        """Sync until it succeeds, waiting longer after each failure; call `notify` if the tools changed."""
        failures = 0
        said = ""
        while not self.current:
            try:
                changed = await self.sync()
            except Exception as exc:  # whatever it was, the server keeps serving and asks again later
                failures += 1
                wait = self.backoff.delay(failures)
                self._failed(exc, wait, news=str(exc) != said)
                said = str(exc)
                await self.backoff.sleep(wait)
                continue
            logger.info("the Kartra action catalog is current%s", "; telling clients it changed" if changed else "")
            if changed:
                await notify()

    def _failed(self, exc: Exception, wait: float, *, news: bool) -> None:
        if isinstance(exc, ConfigError):
            # A connection nobody vouches for any more must not be used: calls say why instead.
            self.problem = str(exc)
        elif self.connection is None and not self.catalog.connection_id:
            self.problem = self._unreachable(self._reason(exc))
        if not isinstance(exc, MembraneError | ConfigError):
            logger.error("refreshing the Kartra action catalog failed unexpectedly", exc_info=exc)
        message = "could not refresh the Kartra action catalog (%s); %s; trying again in %.0f s"
        serving = "serving the cached one" if self.catalog.loaded_from_cache else "no Kartra tools until it works"
        # A new failure is news; the same one again would fill the log every minute.
        logger.log(logging.WARNING if news else logging.DEBUG, message, exc, serving, wait)

    def _reason(self, exc: Exception) -> str:
        """What went wrong, naming Membrane's address once."""
        text = str(exc).rstrip(".")
        return text if self._client.base_url in text else f"Membrane at {self._client.base_url}: {text}"

    @staticmethod
    def _unreachable(reason: str) -> str:
        return (
            f"Kartra is not available yet: {reason}. kartra-mcp keeps trying and updates its tool list when "
            "Membrane answers. Check the network and MEMBRANE_API_URL, or run `kartra-mcp doctor`."
        )
