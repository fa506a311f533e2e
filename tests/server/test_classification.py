"""Custom actions a tenant adds to Membrane, classed through the real path: the sandbox lists them,
the catalog discovers them, and the server runs them under the guardrails of a critical call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import FaultRule, Sandbox
from kartra_mcp.server.runtime import Runtime, open_runtime
from kartra_mcp.tools.executor import NoConfirmer
from kartra_mcp.tools.policy import Policy
from kartra_mcp.tools.spec import Risk
from tests.conftest import FAST_RETRY
from tests.routes import ran, run_rule
from tests.sandbox.conftest import http_client
from tests.server.conftest import Person, all_tools, connect, text_of
from tests.tools.test_classify import SNEAKY


async def _add_refunding_action(sandbox: Sandbox, key: str, name: str, kind: str | None) -> None:
    async with http_client(sandbox) as client:
        spec: dict[str, Any] = {"key": key, "name": name, "cmd": "refund_transaction", "params": ["transaction_id"]}
        if kind is not None:
            spec["type"] = kind
        response = await client.post("/_sandbox/actions", json=spec)
        assert response.status_code == 200, response.text


@asynccontextmanager
async def _runtime(settings: Settings, sandbox: Sandbox, policy: Policy | None = None) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, sandbox=sandbox, policy=policy or Policy(), retry=FAST_RETRY) as runtime:
        yield runtime


def _tool(runtime: Runtime, key: str) -> str:
    spec = runtime.catalog.by_action_key(key)
    assert spec is not None
    return spec.name


def _refunds(sandbox: Sandbox, samples: dict[str, Any]) -> int:
    return len(sandbox.account.children_of.get(int(samples["refundable_transaction"]["transaction_id"]), []))


async def test_custom_actions_nothing_vouches_for_are_listed_as_critical_in_both_eras(
    mode: str, settings: Settings, sandbox: Sandbox
) -> None:
    for key, name, kind in SNEAKY:
        await _add_refunding_action(sandbox, key, name, kind)
    async with _runtime(settings, sandbox) as runtime, connect(runtime, mode, Person()) as client:
        listed = {t.name: t for t in await all_tools(client)}
        names = [_tool(runtime, key) for key, _, _ in SNEAKY]
        specs = [runtime.catalog.get(n) for n in names]
    for name in names:
        hints = listed[name].annotations
        assert hints is not None
        assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (False, True, False)
        assert "Risk: critical." in (listed[name].description or "")
    assert all(s is not None and s.vouched_by is None for s in specs)


async def _add_all(sandbox: Sandbox) -> None:
    for key, name, kind in SNEAKY:
        await _add_refunding_action(sandbox, key, name, kind)


def _runs(sandbox: Sandbox, runtime: Runtime, key: str) -> int:
    spec = runtime.catalog.by_action_key(key)
    assert spec is not None and spec.action_id is not None
    action_id = spec.action_id
    return sum(1 for r in sandbox.requests if ran([r], action_id))


async def test_each_custom_action_that_sounds_like_a_read_needs_a_persons_yes(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    await _add_all(sandbox)
    person = Person("decline")
    tx = samples["refundable_transaction"]["transaction_id"]
    async with _runtime(settings, sandbox) as runtime, connect(runtime, mode, person) as client:
        for asked, (key, _, _) in enumerate(SNEAKY, 1):
            result = await client.call_tool(_tool(runtime, key), {"transaction_id": tx})
            assert result.is_error and len(person.asked) == asked, key
            latest = runtime.audit.rows(tool=_tool(runtime, key))[0]
            assert (latest.risk, latest.outcome) == ("critical", "declined"), key
    assert _refunds(sandbox, samples) == 0


@pytest.mark.parametrize("switch", ["kill_switch", "read_only"])
async def test_the_kill_switch_and_read_only_mode_refuse_each_custom_action_that_sounds_like_a_read(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any], switch: str
) -> None:
    await _add_all(sandbox)
    policy = Policy(kill_switch=switch == "kill_switch", read_only=switch == "read_only")
    async with _runtime(settings, sandbox, policy) as runtime:
        listed = {s.name for s in runtime.executor.tools()}
        for key, _, _ in SNEAKY:
            tool = _tool(runtime, key)
            assert tool not in listed
            result = await runtime.executor.call(tool, {"transaction_id": "1"}, NoConfirmer())
            assert result.is_error and ("kill switch" in result.text or "Read-only" in result.text), key
            assert [(r.risk, r.outcome) for r in runtime.audit.rows(tool=tool)] == [("critical", "refused")]
    assert _refunds(sandbox, samples) == 0


async def test_each_custom_action_that_sounds_like_a_read_counts_toward_the_hourly_cap_and_is_audited(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    await _add_all(sandbox)
    policy = Policy(actions={key: "allow" for key, _, _ in SNEAKY}, max_critical_calls_per_hour=len(SNEAKY))
    tx = samples["refundable_transaction"]["transaction_id"]
    async with _runtime(settings, sandbox, policy) as runtime:
        for key, _, _ in SNEAKY:
            await runtime.executor.call(_tool(runtime, key), {"transaction_id": tx}, NoConfirmer())
            [row] = runtime.audit.rows(tool=_tool(runtime, key))
            assert (row.risk, row.decision) == ("critical", "allow") and row.outcome in ("success", "failed"), key
        over = await runtime.executor.call(_tool(runtime, SNEAKY[0][0]), {"transaction_id": tx}, NoConfirmer())
    assert over.is_error and "critical call(s) per hour" in over.text
    assert _refunds(sandbox, samples) == 1  # the first refunded; Kartra refused the rest


async def test_no_custom_action_that_sounds_like_a_read_is_retried_when_its_answer_is_lost(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    await _add_all(sandbox)
    sandbox.faults.rules = [FaultRule(route=run_rule("act"), hang_seconds=30, after=True)]
    tx = samples["refundable_transaction"]["transaction_id"]
    quick = settings.model_copy(update={"request_timeout": 0.3})
    policy = Policy(actions={key: "allow" for key, _, _ in SNEAKY})
    async with _runtime(quick, sandbox, policy) as runtime:
        for key, _, _ in SNEAKY:
            result = await runtime.executor.call(_tool(runtime, key), {"transaction_id": tx}, NoConfirmer())
            assert result.is_error and "OUTCOME UNKNOWN" in result.text, key
            assert _runs(sandbox, runtime, key) == 1, key
            assert [r.outcome for r in runtime.audit.rows(tool=_tool(runtime, key))] == ["unknown"]
    assert _refunds(sandbox, samples) == 1


async def test_a_person_can_class_their_own_action_as_a_read_in_the_policy(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    async with http_client(sandbox) as raw:
        spec = {"key": "lookup-order", "cmd": "get_transaction_details", "params": ["transaction_id"]}
        assert (await raw.post("/_sandbox/actions", json=spec)).status_code == 200
    policy = Policy(risk={"lookup-order": Risk.READ})
    async with _runtime(settings, sandbox, policy) as runtime, connect(runtime, mode) as client:
        listed = {t.name: t for t in await all_tools(client)}
        result = await client.call_tool(
            "lookup-order", {"transaction_id": samples["refundable_transaction"]["transaction_id"]}
        )
        rows = runtime.audit.rows()
    hints = listed["lookup-order"].annotations
    assert hints is not None and hints.read_only_hint is True
    assert not result.is_error, text_of(result)
    assert rows == []
