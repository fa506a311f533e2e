from __future__ import annotations

from typing import Any

import pytest

from kartra_mcp import phpform
from kartra_mcp.errors import ProxyRequestRefused
from kartra_mcp.tools.proxy import build_request
from kartra_mcp.tools.spec import Risk


def test_an_object_body_is_sent_in_kartras_form_encoding() -> None:
    request = build_request(
        {"body": {"lead": {"email": "a@example.com"}, "actions": [{"cmd": "assign_tag", "tag_name": "VIP"}]}}
    )
    assert request.method == "POST" and request.path == "/"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body is not None
    assert phpform.decode(request.body) == {
        "lead": {"email": "a@example.com"},
        "actions": {"0": {"cmd": "assign_tag", "tag_name": "VIP"}},
    }
    assert request.risk is Risk.WRITE


@pytest.mark.parametrize(
    ("arguments", "risk"),
    [
        pytest.param({"body": {"get_lead": {"email": "a@example.com"}}}, Risk.READ, id="get-lead"),
        pytest.param(
            {"body": "actions[0][cmd]=refund_transaction&actions[0][transaction_id]=7"},
            Risk.CRITICAL,
            id="refund-as-string",
        ),
        pytest.param(
            {"body": {"actions": [{"cmd": "retrieve_account_tags"}, {"cmd": "unassign_tag"}]}},
            Risk.DESTRUCTIVE,
            id="highest-wins",
        ),
        pytest.param({"body": {"actions": [{"cmd": "launch_rocket"}]}}, Risk.CRITICAL, id="unknown-cmd"),
        pytest.param({"body": {"nothing": "here"}}, Risk.CRITICAL, id="no-cmd"),
        pytest.param({"method": "GET", "path": "/api"}, Risk.READ, id="get"),
        pytest.param({"method": "DELETE", "path": "/x"}, Risk.CRITICAL, id="delete"),
        pytest.param(
            {
                "body": '{"actions": [{"cmd": "retrieve_account_tags"}]}',
                "headers": {"Content-Type": "application/json"},
            },
            Risk.READ,
            id="json-string-as-json",
        ),
    ],
)
def test_a_request_is_classed_by_the_commands_it_runs(arguments: dict[str, Any], risk: Risk) -> None:
    assert build_request(arguments).risk is risk


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"path": "https://evil.example/api"}, id="absolute-url"),
        pytest.param({"path": "//evil.example/api"}, id="scheme-relative"),
        pytest.param({"path": "/api/../../admin"}, id="dot-dot"),
        pytest.param({"path": "/api/%2e%2e/admin"}, id="encoded-dot-dot"),
        pytest.param({"path": "/api?api_key=x"}, id="query-in-path"),
        pytest.param({"path": "\\\\evil\\share"}, id="backslashes"),
        pytest.param({"headers": {"Authorization": "Bearer x"}}, id="authorization"),
        pytest.param({"headers": {"Host": "evil.example"}}, id="host"),
        pytest.param({"headers": {"Cookie": "a=b"}}, id="cookie"),
        pytest.param({"headers": {"X-Forwarded-For": "1.2.3.4"}}, id="forwarded"),
        pytest.param({"headers": {"X-Ok": "a\r\nInjected: 1"}}, id="header-injection"),
        pytest.param({"body": {"api_key": "k", "actions": [{"cmd": "get_lead"}]}}, id="credential-in-body"),
        pytest.param({"body": "app_id=1&actions[0][cmd]=x"}, id="credential-in-string"),
        pytest.param({"query": {"api_password": "p"}}, id="credential-in-query"),
        pytest.param({"method": "GET", "body": {"a": 1}}, id="get-with-body"),
        pytest.param({"body": "actions[0][cmd]=get_lead&%20actions[1][cmd]=refund_transaction"}, id="spaced-key"),
        pytest.param({"body": {"actions": [{"cmd": "get_lead", "a.b": "x"}]}}, id="dotted-key"),
        pytest.param({"method": "GET", "query": {"actions[0][cmd]": "refund_transaction"}}, id="command-in-query"),
        pytest.param({"query": {"lead": "x"}}, id="lead-in-query"),
        pytest.param({"headers": {"X-Note": "café"}}, id="non-ascii-header"),
        pytest.param({"body": "{broken", "headers": {"Content-Type": "application/json"}}, id="bad-json"),
        pytest.param(
            # Looks like JSON, but goes as a form, where PHP would run the refund inside it.
            {"body": '{"x":"&actions[0][cmd]=refund_transaction&actions[0][transaction_id]=7&y=","get_lead":{}}'},
            id="json-looking-form",
        ),
        pytest.param({"body": "[1, 2]", "headers": {"Content-Type": "application/json"}}, id="json-not-object"),
        pytest.param({"body": {"actions": ["refund_transaction"]}}, id="actions-not-objects"),
    ],
)
def test_requests_that_could_leave_kartra_carry_credentials_or_hide_commands_are_refused(
    arguments: dict[str, Any],
) -> None:
    with pytest.raises(ProxyRequestRefused):
        build_request(arguments)


def test_a_form_string_is_sent_in_the_canonical_encoding_that_was_classified() -> None:
    request = build_request({"body": "actions[]=&actions[0][cmd]=get_lead&get_lead[email]=a%40example.com"})
    assert request.body is not None
    sent = phpform.decode(request.body)
    assert sent == phpform.decode(phpform.encode(sent))
    assert [i.cmd for i in request.invocations] == ["get_lead", "get_lead"]


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        pytest.param("application/JSON", "application/json", id="upper-case-json"),
        pytest.param("Application/Json; charset=utf-8", "application/json", id="json-with-charset"),
        pytest.param("application/x-www-form-urlencoded; x=json", "application/x-www-form-urlencoded", id="form-json"),
    ],
)
def test_the_content_type_is_read_exactly_and_sent_canonically(given: str, sent: str) -> None:
    body = '{"actions": [{"cmd": "retrieve_account_tags"}]}' if sent.endswith("json") else "get_lead[email]=a"
    request = build_request({"body": body, "headers": {"content-type": given, "Content-Type": given}})
    assert [(k, v) for k, v in request.headers.items() if k.lower() == "content-type"] == [("Content-Type", sent)]


def test_a_command_hidden_in_a_json_string_value_stays_a_string() -> None:
    hidden = "7&actions[0][cmd]=refund_transaction&actions[0][transaction_id]=7&z="
    request = build_request(
        {
            "headers": {"Content-Type": "application/JSON"},
            "body": {"actions": [{"cmd": "get_transaction_details", "transaction_id": hidden}]},
        }
    )
    assert request.body is not None and request.headers["Content-Type"] == "application/json"
    assert [i.cmd for i in request.invocations] == ["get_transaction_details"]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"headers": {"Content-Type": "text/plain; note=JSON"}, "body": "x=1"}, id="other-media-type"),
        pytest.param({"path": "/%3Factions%5B0%5D%5Bcmd%5D%3Drefund_transaction"}, id="query-in-escaped-path"),
        pytest.param({"path": "/api;x=1"}, id="path-parameter"),
        pytest.param({"path": "/user@host"}, id="at-sign"),
        pytest.param({"body": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}}}, id="too-deep"),
    ],
)
def test_paths_and_bodies_that_could_hide_a_request_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ProxyRequestRefused):
        build_request(arguments)


@pytest.mark.parametrize(
    "cmd",
    [
        pytest.param("Refund_Transaction", id="case"),
        pytest.param("REFUND_TRANSACTION", id="upper-case"),
        pytest.param("refund_transaction ", id="trailing-space"),
        pytest.param("refund\u200b_transaction", id="zero-width-space"),
        pytest.param("refund_transaction\u200d", id="zero-width-joiner"),
        pytest.param("\uff52efund_transaction", id="full-width-letter"),
        pytest.param("refund_transaction\x00", id="nul"),
        pytest.param("r\u0435fund_transaction", id="cyrillic-e"),
        pytest.param("refund_transact\u0131on", id="dotless-i"),
        pytest.param("", id="empty"),
    ],
)
def test_a_command_not_spelled_exactly_as_kartras_is_refused_not_offered_for_confirmation(cmd: str) -> None:
    with pytest.raises(ProxyRequestRefused) as refused:
        build_request({"body": {"actions": [{"cmd": cmd, "transaction_id": "7"}]}})
    assert "Nothing was sent" in str(refused.value)
    assert "\u200b" not in str(refused.value)  # an invisible character is shown escaped, never raw


def test_a_plainly_spelled_unknown_command_is_critical() -> None:
    request = build_request({"body": {"actions": [{"cmd": "refund_transactions", "transaction_id": "7"}]}})
    assert [(i.cmd, i.action, i.risk) for i in request.invocations] == [("refund_transactions", None, Risk.CRITICAL)]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"body": {"lead": {"api_password": "p"}, "actions": [{"cmd": "get_lead"}]}}, id="nested"),
        pytest.param({"body": {"actions": [{"cmd": "get_lead", "api_key": "k"}]}}, id="in-an-action"),
        pytest.param({"body": {"API_KEY": "k", "actions": [{"cmd": "get_lead"}]}}, id="upper-case"),
        pytest.param({"body": {"Api-Key": "k"}}, id="dashed"),
        pytest.param({"body": {"\uff41\uff50\uff49_key": "k"}}, id="full-width"),
        pytest.param({"body": "lead[api_password]=p&actions[0][cmd]=get_lead"}, id="nested-in-form"),
        pytest.param({"body": "actions[0][api_key]=k&actions[0][cmd]=get_lead"}, id="action-in-form"),
        pytest.param({"body": "APP_ID=1&actions[0][cmd]=get_lead"}, id="upper-case-in-form"),
        pytest.param(
            {"body": '{"lead": {"API_PASSWORD": "p"}}', "headers": {"Content-Type": "application/json"}}, id="json"
        ),
        pytest.param({"query": {"API_KEY": "k"}}, id="query"),
        pytest.param({"headers": {"Api-Password": "p"}}, id="header"),
    ],
)
def test_kartra_credentials_are_refused_at_any_depth_and_in_any_spelling(arguments: dict[str, Any]) -> None:
    with pytest.raises(ProxyRequestRefused) as refused:
        build_request(arguments)
    assert "credential" in str(refused.value) or "not allowed" in str(refused.value)
    assert "'p'" not in str(refused.value) and "'k'" not in str(refused.value)
