"""Suggestions for a half-typed value (a tag, a list, a transaction, a lead's email) from the account.

Tags, lists and a lead's transactions are read through Membrane with the account's own read
actions, only where the policy allows those reads. Kartra's API cannot list leads, so emails come
from the leads this server has worked on (the audit log). Answers are bounded and kept briefly, so
a client completing keystroke by keystroke sends Kartra one read, not one per key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kartra_mcp.errors import MembraneError
from kartra_mcp.membrane import MembraneClient
from kartra_mcp.tools.audit import AuditTrail
from kartra_mcp.tools.catalog import Catalog
from kartra_mcp.tools.policy import Policy, Target
from kartra_mcp.tools.spec import Risk

logger = logging.getLogger(__name__)

MAX_VALUES = 100  # what one completion answer may carry
TTL_SECONDS = 30.0
_AUDIT_WINDOW = 500


@dataclass(frozen=True)
class Suggestions:
    values: list[str]
    total: int

    @property
    def has_more(self) -> bool:
        return self.total > len(self.values)


def matching(candidates: Iterable[str], typed: str) -> Suggestions:
    wanted = typed.casefold()
    unique = list(dict.fromkeys(c for c in candidates if c))
    starts = [c for c in unique if c.casefold().startswith(wanted)]
    inside = [c for c in unique if wanted in c.casefold() and c not in starts]
    found = starts + inside
    return Suggestions(found[:MAX_VALUES], len(found))


class Suggester:
    """Reads what completions offer, through the same client, catalog and policy as tool calls."""

    def __init__(
        self,
        *,
        client: MembraneClient,
        catalog: Catalog,
        policy: Policy,
        audit: AuditTrail,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._catalog = catalog
        self._policy = policy
        self._audit = audit
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}

    async def tags(self, typed: str) -> Suggestions:
        return matching(await self._listing("retrieve-account-tags", "account_tags"), typed)

    async def lists(self, typed: str) -> Suggestions:
        return matching(await self._listing("retrieve-account-lists", "account_lists"), typed)

    async def transactions(self, email: str, typed: str) -> Suggestions:
        """The lead's transaction ids (none until the lead's email is known)."""
        if "@" not in email:
            return Suggestions([], 0)
        rows = await self._read("retrieve-transactions-from-lead", {"email": email.strip()}, "transaction_list")
        ids = [str(r.get("transaction_id", "")) for r in rows if isinstance(r, dict)]
        return matching(ids, typed)

    async def emails(self, typed: str) -> Suggestions:
        """Emails of leads named in recent audit rows: Kartra's API has no way to list leads."""
        seen = [
            str(row.arguments.get("email", ""))
            for row in await self._audit.read_rows(limit=_AUDIT_WINDOW)
            if isinstance(row.arguments, dict)
        ]
        return matching((e for e in seen if "@" in e), typed)

    async def _listing(self, action: str, field: str) -> list[str]:
        return [str(v) for v in await self._read(action, {}, field) if isinstance(v, str)]

    async def _read(self, action: str, arguments: dict[str, Any], field: str) -> list[Any]:
        key = (action, repr(sorted(arguments.items())))
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        spec = self._catalog.by_action_key(action)
        if spec is None or spec.action_id is None or spec.risk is not Risk.READ:
            return []  # a suggestion only ever reads (the person's [risk] table may class an action higher)
        if self._policy.decide(spec.name, [Target(spec.action_key, spec.risk)]).mode != "allow":
            return []  # a read the policy would not run without a person is not run for a suggestion
        try:
            run = await self._client.run_action(
                spec.action_id, connection_id=self._catalog.connection_id, input=arguments, retry_safe=True
            )
        except MembraneError as exc:
            logger.warning("could not read %s for suggestions (%s)", action, exc)
            return []
        output = run.output if isinstance(run.output, dict) else {}
        found = output.get(field)
        values = list(found) if isinstance(found, list) else []
        if len(self._cache) >= 256:
            self._cache.clear()
        self._cache[key] = (now + TTL_SECONDS, values)
        return values
