"""The Membrane client over HTTP against the sandbox: calls, pagination, error mapping, retries."""

from __future__ import annotations

import socket
from typing import Any

import httpx2
import pytest

from kartra_mcp import phpform
from kartra_mcp.config import Settings
from kartra_mcp.errors import (
    MembraneApiError,
    MembraneBadRequest,
    MembraneNotAuthenticated,
    MembraneNotFound,
    MembraneProtocolError,
    MembraneRateLimited,
    MembraneServerError,
    MembraneTimeout,
    MembraneUnreachable,
)
from kartra_mcp.membrane import BearerToken, MembraneClient
from kartra_mcp.sandbox import FaultRule, Sandbox, asgi_transport
from kartra_mcp.server.runtime import SANDBOX_URL
from tests.conftest import FAST_RETRY
from tests.routes import ROUTES, run_rule


def _requests(sandbox: Sandbox, method: str, path_part: str) -> int:
    return sum(1 for r in sandbox.requests if r["method"] == method and path_part in r["path"])


def _runs(sandbox: Sandbox) -> int:
    """Action runs that reached the sandbox, on either route."""
    return sum(
        1 for r in sandbox.requests if r["path"].endswith("/run") or r.get("runs", "").startswith("/act/action/")
    )


def _client(sandbox: Sandbox, **kwargs: Any) -> MembraneClient:
    kwargs.setdefault("retry", FAST_RETRY)
    return MembraneClient(
        base_url=SANDBOX_URL, auth=BearerToken(sandbox.token), transport=asgi_transport(sandbox), **kwargs
    )


async def test_the_kartra_connection_is_listed_with_its_integration(membrane: MembraneClient) -> None:
    connections = await membrane.list_connections(integration_key="kartra")
    assert len(connections) == 1
    assert connections[0].is_connected
    assert connections[0].integration_key == "kartra"
    again = await membrane.get_connection(connections[0].id)
    assert again.id == connections[0].id


async def test_listing_actions_follows_every_page(membrane: MembraneClient, sandbox: Sandbox) -> None:
    connection = sandbox.connections[0]["id"]
    sandbox.requests.clear()
    actions = await membrane.list_actions(connection_id=connection, page_size=7)
    assert len(actions) == 31
    assert len({a.id for a in actions}) == 31
    assert _requests(sandbox, "GET", "/actions") == 5  # 7 + 7 + 7 + 7 + 3


async def test_one_action_comes_with_its_schemas(membrane: MembraneClient) -> None:
    action = await membrane.get_action("get-lead")
    assert action.key == "get-lead"
    assert action.input_schema is not None and "email" in action.input_schema["properties"]
    assert action.output_schema is not None


async def test_running_a_read_returns_its_output_and_run_id(
    membrane: MembraneClient, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    action = await membrane.get_action("get-lead")
    run = await membrane.run_action(
        action.id,
        connection_id=sandbox.connections[0]["id"],
        input={"email": samples["lead"]["email"]},
        retry_safe=True,
    )
    assert run.output["lead_details"]["email"] == samples["lead"]["email"]
    assert run.action_run_id in sandbox.run_logs


async def test_the_proxy_returns_kartras_answer_as_kartra_sent_it(
    membrane: MembraneClient, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    body = phpform.encode({"get_lead": {"email": samples["lead"]["email"]}}).encode()
    response = await membrane.proxy(
        sandbox.connections[0]["id"],
        "POST",
        "/",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        retry_safe=True,
    )
    assert response.status_code == 200
    assert response.data()["lead_details"]["id"] == samples["lead"]["id"]


async def test_an_upstream_error_status_through_the_proxy_is_returned_not_raised(
    membrane: MembraneClient, sandbox: Sandbox
) -> None:
    response = await membrane.proxy(sandbox.connections[0]["id"], "GET", "/", retry_safe=True)
    assert response.status_code == 405
    assert response.data()["status"] == "Error"


async def test_a_connection_request_completes_when_the_person_opens_its_link(
    membrane: MembraneClient, sandbox: Sandbox
) -> None:
    request = await membrane.create_connection_request(integration_key="kartra")
    assert request.status == "pending"
    async with httpx2.AsyncClient(transport=asgi_transport(sandbox)) as browser:
        page = await browser.get(request.url)
    assert page.status_code == 200
    done = await membrane.get_connection_request(request.request_id)
    assert done.status == "success"
    assert done.result_connection_id == sandbox.connections[0]["id"]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda c: c.get_action("no-such-action"), MembraneNotFound, id="404-unknown-action"),
        pytest.param(lambda c: c.get_connection("0" * 24), MembraneNotFound, id="404-unknown-connection"),
        pytest.param(
            lambda c: c.run_action("refund-transaction", connection_id="kartra", input={}, retry_safe=False),
            MembraneBadRequest,
            id="400-invalid-input",
        ),
    ],
)
async def test_membrane_errors_map_to_one_class_each(
    membrane: MembraneClient, call: Any, error: type[MembraneApiError]
) -> None:
    with pytest.raises(error) as raised:
        await call(membrane)
    assert raised.value.status_code in (400, 404)
    assert raised.value.type == "bad_request"


async def test_invalid_input_carries_membranes_details_and_run_id(membrane: MembraneClient) -> None:
    with pytest.raises(MembraneBadRequest) as raised:
        await membrane.run_action("refund-transaction", connection_id="kartra", input={}, retry_safe=False)
    assert raised.value.action_run_id
    assert raised.value.data["errors"][0]["message"]


async def test_a_wrong_token_is_not_authenticated(sandbox: Sandbox) -> None:
    async with MembraneClient(
        base_url=SANDBOX_URL, auth=BearerToken("wrong"), transport=asgi_transport(sandbox), retry=FAST_RETRY
    ) as client:
        with pytest.raises(MembraneNotAuthenticated) as raised:
            await client.list_connections()
    assert raised.value.key == "not_authenticated"


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_read_is_retried_through_transient_failures(
    membrane: MembraneClient, sandbox: Sandbox, status: int
) -> None:
    sandbox.faults.rules = [FaultRule(route="GET /connections", status=status, times=2)]
    sandbox.requests.clear()
    connections = await membrane.list_connections()
    assert len(connections) == 1
    assert _requests(sandbox, "GET", "/connections") == 3


async def test_a_read_gives_up_after_the_last_attempt(membrane: MembraneClient, sandbox: Sandbox) -> None:
    sandbox.faults.rules = [FaultRule(route="GET /connections", status=429)]
    sandbox.requests.clear()
    with pytest.raises(MembraneRateLimited):
        await membrane.list_connections()
    assert _requests(sandbox, "GET", "/connections") == FAST_RETRY.attempts


async def test_a_malformed_answer_to_a_read_is_retried(membrane: MembraneClient, sandbox: Sandbox) -> None:
    sandbox.faults.rules = [FaultRule(route="GET /actions/*", malformed=True, times=1)]
    action = await membrane.get_action("get-lead")
    assert action.key == "get-lead"


@pytest.mark.parametrize("route", ROUTES)
async def test_a_write_is_never_sent_twice_on_a_server_error(
    route: str, membrane: MembraneClient, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    sandbox.faults.rules = [FaultRule(route=run_rule(route), status=500, times=1)]
    sandbox.requests.clear()
    with pytest.raises(MembraneServerError) as raised:
        await membrane.run_action(
            "assign-tag",
            connection_id="kartra",
            retry_safe=False,
            input={"email": samples["lead"]["email"], "tag_name": "VIP"},
        )
    assert raised.value.may_have_executed
    assert _runs(sandbox) == 1


@pytest.mark.parametrize("route", ROUTES)
async def test_a_write_whose_answer_is_lost_happens_once_and_reports_an_unknown_outcome(
    route: str, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tx = samples["refundable_transaction"]["transaction_id"]
    sandbox.faults.rules = [FaultRule(route=run_rule(route), hang_seconds=30, after=True, times=1)]
    before = len(sandbox.account.transactions)
    async with _client(sandbox, timeout=0.2) as client:
        with pytest.raises(MembraneTimeout) as raised:
            await client.run_action(
                "refund-transaction", connection_id="kartra", retry_safe=False, input={"transaction_id": tx}
            )
    assert raised.value.may_have_executed
    assert len(sandbox.account.transactions) == before + 1  # the refund happened, exactly once
    assert _runs(sandbox) == 1


async def test_a_read_that_times_out_is_tried_again(sandbox: Sandbox) -> None:
    sandbox.faults.rules = [FaultRule(route="GET /connections", hang_seconds=30, times=1)]
    async with _client(sandbox, timeout=0.2) as client:
        assert len(await client.list_connections()) == 1
    assert _requests(sandbox, "GET", "/connections") == 2


@pytest.mark.parametrize("route", ROUTES)
async def test_a_malformed_answer_to_a_write_is_a_protocol_error_that_may_have_executed(
    route: str, membrane: MembraneClient, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    sandbox.faults.rules = [FaultRule(route=run_rule(route), malformed=True, times=1)]
    with pytest.raises(MembraneProtocolError) as raised:
        await membrane.run_action(
            "assign-tag",
            connection_id="kartra",
            retry_safe=False,
            input={"email": samples["lead"]["email"], "tag_name": "VIP"},
        )
    assert raised.value.may_have_executed


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_membrane_is_reported_as_never_sent(settings: Settings) -> None:
    async with MembraneClient(
        base_url=f"http://127.0.0.1:{_closed_port()}", auth=BearerToken("t"), retry=FAST_RETRY, timeout=2
    ) as client:
        with pytest.raises(MembraneUnreachable) as raised:
            await client.run_action("assign-tag", connection_id="c", input={}, retry_safe=False)
    assert not raised.value.may_have_executed
    assert "Could not reach Membrane" in str(raised.value)
