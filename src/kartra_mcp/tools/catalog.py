"""The catalog: one tool per Membrane action of the Kartra connection, found at run time.

It is cached on disk per connection: a start serves the cache at once and refreshes in the
background; a refresh that changes the tools says so, so the server can tell clients. One action
with a broken schema never breaks the others: it is listed with a minimal schema and a warning, or
skipped with a logged reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from kartra_mcp.errors import MembraneError
from kartra_mcp.membrane import Action, MembraneClient
from kartra_mcp.schemas import checked, normalize_input_schema, normalize_output_schema
from kartra_mcp.tools.classify import classify
from kartra_mcp.tools.naming import tool_name
from kartra_mcp.tools.spec import Risk, ToolSpec

logger = logging.getLogger(__name__)

_CACHE_VERSION = 1
_DETAIL_FETCHES = 8


def spec_for_action(action: Action, reserved: Iterable[str] = (), risks: Mapping[str, Risk] | None = None) -> ToolSpec:
    """The tool for one action: its key as the name, its own words, a client-safe schema, its risk.

    `risks` are the person's own classes for actions (the policy's `[risk]` table), by action key.
    """
    key = action.key or action.id
    normalized = normalize_input_schema(action.input_schema)
    classed = classify(key, action.name or "", action.type, risks)
    risk = classed.risk
    title = action.name or key
    description = (action.description or "").strip() or title
    for note in normalized.warnings:
        logger.debug("action %s: %s", key, note)
    return ToolSpec(
        name=tool_name(key, frozenset(reserved)),
        title=title,
        description=description,
        input_schema=normalized.schema,
        # Only reads promise a shape: a write's answer that breaks a promise would read as a failure.
        output_schema=normalize_output_schema(action.output_schema) if risk is Risk.READ else None,
        risk=risk,
        kind="action",
        action_id=action.id,
        action_key=key,
        wrapped=normalized.wrapped,
        idempotent=classed.idempotent,
        warnings=tuple(normalized.warnings),
        vouched_by=classed.vouched_by,
    )


class Catalog:
    """The action tools of one connection, kept current."""

    def __init__(
        self,
        client: MembraneClient,
        connection_id: str,
        *,
        cache_dir: Path | None = None,
        reserved: Iterable[str] = (),
        risks: Mapping[str, Risk] | None = None,
    ) -> None:
        self._client = client
        self.connection_id = connection_id
        self._reserved = frozenset(reserved)
        self._risks = dict(risks or {})
        self._cache_dir = cache_dir
        self._specs: dict[str, ToolSpec] = {}
        self._by_key: dict[str, ToolSpec] = {}
        self._fingerprint = ""
        self._sorted: list[ToolSpec] = []
        # Bumped whenever the tools are replaced, so listings built from them know when to rebuild.
        self.generation = 0
        self.loaded_from_cache = False

    @property
    def _cache(self) -> Path | None:
        if self._cache_dir is None:
            return None
        key = hashlib.sha256(f"{self._client.base_url}|{self.connection_id}".encode()).hexdigest()[:16]
        return self._cache_dir / f"catalog-{key}.json"

    @property
    def specs(self) -> list[ToolSpec]:
        return list(self._sorted)

    def get(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    def by_action_key(self, key: str) -> ToolSpec | None:
        return self._by_key.get(key)

    async def start(self) -> bool:
        """Load the tools: from the cache when there is one (True), else from Membrane (False)."""
        if self.load_cache():
            return True
        await self.refresh()
        return False

    def load_cache(self) -> bool:
        """Serve the cached tools of this connection, if a usable cache holds them; never asks Membrane."""
        cached = self._read_cache() if self.connection_id else None
        if cached is None:
            return False
        self._install(cached)
        self.loaded_from_cache = True
        return True

    def use_connection(self, connection_id: str) -> bool:
        """Serve another connection's tools from now on; True when it is another one.

        The tools of the old connection are dropped at once: they must not run on the new one.
        """
        if connection_id == self.connection_id:
            return False
        self.connection_id = connection_id
        self._install([])
        self.loaded_from_cache = False
        return True

    async def refresh(self) -> bool:
        """Fetch the actions again; True when the tools changed."""
        actions = await self._client.list_actions(connection_id=self.connection_id)
        actions = await self._complete(actions)
        changed = self._install(actions)
        self._write_cache(actions)
        return changed

    async def _complete(self, actions: list[Action]) -> list[Action]:
        """Fetch the full action where the list left its schema out."""
        missing = [i for i, a in enumerate(actions) if "input_schema" not in a.model_fields_set]
        if not missing:
            return actions
        complete = list(actions)
        limiter = anyio.Semaphore(_DETAIL_FETCHES)

        async def fetch(index: int) -> None:
            async with limiter:
                try:
                    complete[index] = await self._client.get_action(actions[index].id)
                except MembraneError as exc:
                    logger.warning(
                        "action %s: could not fetch its schema (%s); listed without one", actions[index].key, exc
                    )

        async with anyio.create_task_group() as group:
            for index in missing:
                group.start_soon(fetch, index)
        return complete

    def _install(self, actions: Sequence[Action]) -> bool:
        specs: dict[str, ToolSpec] = {}
        for action in actions:
            if action.is_deactivated:
                continue
            try:
                spec = spec_for_action(action, self._reserved, self._risks)
            except Exception:  # one broken action must never take the others down
                logger.exception(
                    "action %s (%s) skipped: its definition cannot be turned into a tool", action.key, action.id
                )
                continue
            if spec.name in specs:
                logger.warning("action %s skipped: its tool name %s is taken by another action", action.id, spec.name)
                continue
            specs[spec.name] = spec
        fingerprint = hashlib.sha256(
            json.dumps(
                [
                    (s.name, s.description, s.input_schema, s.output_schema, s.risk.value)
                    for s in sorted(specs.values(), key=lambda s: s.name)
                ],
                sort_keys=True,
            ).encode()
        ).hexdigest()
        adjusted = sum(1 for s in specs.values() if s.warnings)
        if adjusted:
            logger.info(
                "%d of %d action schemas were adjusted for MCP clients (details at DEBUG)", adjusted, len(specs)
            )
        changed = fingerprint != self._fingerprint
        self._specs = specs
        self._sorted = [specs[name] for name in sorted(specs)]
        self._by_key = {s.action_key: s for s in specs.values() if s.action_key}
        self._fingerprint = fingerprint
        self.generation += 1
        return changed

    def _read_cache(self) -> list[Action] | None:
        """The cached actions; a cache that cannot be used is treated as absent, never as a reason to stop."""
        path = self._cache
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("actions"), list):
                raise ValueError("it is not a catalog (an object with a list of actions)")
            if data.get("version") != _CACHE_VERSION or data.get("connection_id") != self.connection_id:
                return None
            actions = [Action.model_validate(item) for item in data["actions"]]
            # The schemas this catalog made that passed the meta-schema when it was written.
            record = data.get("checked")
            checked.vouch(record if isinstance(record, list) else ())
            return actions
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            logger.warning("ignoring the catalog cache %s (it will be written again): %s", path, exc)
            return None

    def _write_cache(self, actions: Sequence[Action]) -> None:
        path = self._cache
        if path is None:
            return
        payload: dict[str, Any] = {
            "version": _CACHE_VERSION,
            "connection_id": self.connection_id,
            "actions": [a.model_dump(by_alias=True, exclude_none=True) for a in actions],
            "checked": checked.passed(
                schema for spec in self._sorted for schema in (spec.input_schema, spec.output_schema)
            ),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(payload), encoding="utf-8")
            temporary.replace(path)
        except OSError as exc:
            logger.warning("could not write the catalog cache %s: %s", path, exc)
