"""Which route carries runs and raw requests: `/act` where Membrane serves it, the old routes only
where it does not, found without running anything and never by sending a write twice."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kartra_mcp.errors import MembraneBadRequest, MembraneNotFound, MembraneRunFailed, MembraneServerError
from kartra_mcp.membrane import BearerToken, MembraneClient
from kartra_mcp.membrane.routes import answer
from kartra_mcp.sandbox import FaultRule, Sandbox, SandboxConfig, asgi_transport
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.server.runtime import SANDBOX_URL
from kartra_mcp.tools.answers import garbled_answer
from tests.conftest import FAST_RETRY
from tests.routes import ROUTES, carried_by, raw_rule, run_rule

GET_LEAD = {"get_lead": {"id": "1"}}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _box(*without: str) -> Sandbox:
    return Sandbox(SandboxConfig(leads=3, without=frozenset(without)))


async def _opened(sandbox: Sandbox) -> AsyncIterator[MembraneClient]:
    async with MembraneClient(
        base_url=SANDBOX_URL, auth=BearerToken(sandbox.token), transport=asgi_transport(sandbox), retry=FAST_RETRY
    ) as client:
        yield client


def _paths(sandbox: Sandbox) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in sandbox.requests]


async def _run_and_raw(client: MembraneClient, sandbox: Sandbox) -> None:
    connection = sandbox.connections[0]["id"]
    run = await client.run_action(
        BY_KEY["give-points-to-lead"].id,
        connection_id=connection,
        input={"lead_id": "1", "points": 5},
        retry_safe=False,
    )
    assert run.output["type"] == "105"
    raw = await client.proxy(connection, "POST", "/", headers=FORM, body=b"get_lead%5Bid%5D=1", retry_safe=True)
    assert (raw.status_code, raw.data()["lead_details"]["id"]) == (200, "1")


@pytest.mark.parametrize("without", [(), ("act",)], ids=["act", "deprecated-run"])
async def test_a_run_goes_to_the_connection_each_call_names_even_for_the_same_action(without: tuple[str, ...]) -> None:
    sandbox = _box(*without)
    async for client in _opened(sandbox):
        action, lead = BY_KEY["get-lead"].id, {"lead_id": "1"}
        await client.run_action(action, connection_id=sandbox.connections[0]["id"], input=lead, retry_safe=True)
        with pytest.raises(MembraneNotFound):
            await client.run_action(action, connection_id="no-such-connection", input=lead, retry_safe=True)


async def test_runs_and_raw_requests_use_only_act_where_membrane_serves_it() -> None:
    sandbox = _box("run", "proxy")  # the deprecated and undocumented routes are not even there
    async for client in _opened(sandbox):
        await _run_and_raw(client, sandbox)
        await _run_and_raw(client, sandbox)
    assert set(_paths(sandbox)) == {"POST /act"}
    assert [r["runs"] for r in sandbox.requests] == [
        "/act",  # the probe, once
        *(["/act/action/" + BY_KEY["give-points-to-lead"].id, "/act/api"] * 2),
    ]
    logs = list(sandbox.run_logs.values())
    assert [log["action"]["type"] for log in logs] == ["id", "api"] * 2


async def test_without_act_one_probe_that_runs_nothing_switches_to_the_old_routes_for_good() -> None:
    sandbox = _box("act")
    score = sandbox.account.leads[1].score
    async for client in _opened(sandbox):
        assert await client.uses_act() is False
        assert sandbox.run_logs == {}  # the probe ran nothing
        await _run_and_raw(client, sandbox)
        await _run_and_raw(client, sandbox)
    assert _paths(sandbox) == [
        "POST /act",
        *[
            f"POST /actions/{BY_KEY['give-points-to-lead'].id}/run",
            f"POST /connections/{sandbox.connections[0]['id']}/proxy/",
        ]
        * 2,
    ]
    assert sandbox.account.leads[1].score == score + 10


async def test_the_probe_runs_nothing_on_a_membrane_that_serves_act() -> None:
    sandbox = _box()
    async for client in _opened(sandbox):
        assert await client.uses_act() is True
    assert sandbox.run_logs == {}
    assert [r["runs"] for r in sandbox.requests] == ["/act"]


async def test_a_failed_write_on_act_is_never_sent_again_on_an_old_route() -> None:
    sandbox = _box()
    sandbox.faults.rules = [FaultRule(route=run_rule("act"), status=500, after=True)]
    async for client in _opened(sandbox):
        with pytest.raises(MembraneServerError) as raised:
            await client.run_action(
                "give-points-to-lead", connection_id="kartra", input={"lead_id": "1", "points": 5}, retry_safe=False
            )
    assert raised.value.may_have_executed
    assert [p for p in _paths(sandbox) if p != "POST /act"] == []
    assert len(sandbox.run_logs) == 1


async def test_a_not_found_from_act_is_an_answer_not_a_reason_to_fall_back() -> None:
    sandbox = _box()
    async for client in _opened(sandbox):
        with pytest.raises(MembraneNotFound):
            await client.run_action("no-such-action", connection_id="kartra", input={}, retry_safe=False)
        assert await client.uses_act() is True
    assert set(_paths(sandbox)) == {"POST /act"}


@pytest.mark.parametrize("route", ROUTES)
async def test_an_upstream_error_status_comes_back_the_same_on_either_route(route: str) -> None:
    sandbox = _box(*(["act"] if route == "legacy" else []))
    async for client in _opened(sandbox):
        response = await client.proxy(sandbox.connections[0]["id"], "GET", "/", retry_safe=True)
    assert response.status_code == 405
    assert response.data()["status"] == "Error"


@pytest.mark.parametrize("route", ROUTES)
async def test_a_raw_write_whose_upstream_failed_after_running_comes_back_with_its_status(route: str) -> None:
    sandbox = _box(*(["act"] if route == "legacy" else []))
    sandbox.faults.rules = [FaultRule(route=raw_rule(route), status=502, after=True, upstream=True)]
    form = b"lead%5Bid%5D=1&actions%5B0%5D%5Bcmd%5D=give_points_to_lead&actions%5B0%5D%5Bpoints%5D=5"
    score = sandbox.account.leads[1].score
    async for client in _opened(sandbox):
        response = await client.proxy(
            sandbox.connections[0]["id"], "POST", "/", headers=FORM, body=form, retry_safe=False
        )
    assert (response.status_code, response.data()["status"]) == (502, "Error")
    assert sandbox.account.leads[1].score == score + 5


async def test_a_raw_run_that_failed_without_kartras_answer_may_have_executed() -> None:
    sandbox = _box()
    sandbox.faults.rules = [FaultRule(route="POST /act/api", status=400, after=True)]
    async for client in _opened(sandbox):
        with pytest.raises(MembraneRunFailed) as raised:
            await client.proxy(
                sandbox.connections[0]["id"], "POST", "/", headers=FORM, body=b"get_lead%5Bid%5D=1", retry_safe=False
            )
    assert raised.value.may_have_executed
    assert raised.value.action_run_id in sandbox.run_logs


async def test_a_raw_request_refused_before_any_run_did_nothing() -> None:
    sandbox = _box()
    sandbox.faults.rules = [FaultRule(route="POST /act/api", status=400)]
    async for client in _opened(sandbox):
        with pytest.raises(MembraneBadRequest) as raised:
            await client.proxy(
                sandbox.connections[0]["id"], "POST", "/", headers=FORM, body=b"get_lead%5Bid%5D=1", retry_safe=False
            )
    assert not raised.value.may_have_executed
    assert sandbox.run_logs == {}


@pytest.mark.parametrize(
    ("without", "act", "proxy"),
    [((), True, True), (("act",), False, True), (("proxy",), True, False), (("act", "proxy"), False, False)],
)
async def test_route_support_says_what_the_deployment_answers_without_running_anything(
    without: tuple[str, ...], act: bool, proxy: bool
) -> None:
    sandbox = _box(*without)
    before = sandbox.state()["counts"]
    async for client in _opened(sandbox):
        support = await client.route_support(sandbox.connections[0]["id"])
    assert (support.act, support.proxy) == (act, proxy)
    assert sandbox.state()["counts"] == before


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param(FORM, b"get_lead%5Bid%5D=1", id="form"),
        pytest.param({"Content-Type": "application/json"}, b'{"get_lead": {"id": "1"}}', id="json"),
    ],
)
async def test_a_raw_request_reaches_kartra_alike_on_either_route(
    route: str, headers: dict[str, str], body: bytes
) -> None:
    sandbox = _box(*(["act"] if route == "legacy" else []))
    async for client in _opened(sandbox):
        response = await client.proxy(
            sandbox.connections[0]["id"], "POST", "/", headers=headers, body=body, query={"x": "1"}, retry_safe=True
        )
    assert (response.status_code, response.data()["lead_details"]["id"]) == (200, "1")
    assert carried_by(sandbox.requests) == {route}


@pytest.mark.parametrize(
    ("output", "body"),
    [
        pytest.param({"status": "Success"}, b'{"status": "Success"}', id="JSON stays JSON"),
        pytest.param("<html>Bad gateway</html>", b"<html>Bad gateway</html>", id="text stays text"),
        pytest.param(None, b"", id="nothing stays empty"),
    ],
)
def test_an_act_output_becomes_the_body_kartra_sent_so_garbled_answers_are_judged_alike(
    output: object, body: bytes
) -> None:
    assert answer(output).body == body
    assert (garbled_answer(200, answer(output).body) is None) is isinstance(output, dict)
