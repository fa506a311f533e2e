"""Kartra's own API through the proxy: PHP-bracket calls, chains, the codes only raw calls can reach, and
one account shared with every action run."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from kartra_mcp import phpform
from kartra_mcp.sandbox import Sandbox
from tests.sandbox.conftest import FORM, fill, kartra, lead, output, snapshot


def _slots(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each chained command's name and answer, in order."""
    return [next(iter(slot.items())) for slot in body["actions"]]


async def test_create_lead_and_assign_tag_chain_in_one_call(client: httpx2.AsyncClient) -> None:
    body = await kartra(
        client,
        {
            "lead": {"email": "chained@example.com", "first_name": "Chain"},
            "actions": [{"cmd": "create_lead"}, {"cmd": "assign_tag", "tag_name": "Newsletter"}],
        },
    )
    assert body["status"] == "Success"
    [(create, created), (assign, assigned)] = _slots(body)
    assert (create, created["status"]) == ("create_lead", "Success")
    assert (assign, assigned["type"]) == ("assign_tag", "103")
    details = await lead(client, email="chained@example.com")
    assert details["id"] == created["lead_details"]["id"]
    assert details["first_name"] == "Chain"
    assert [t["tag_name"] for t in details["tags"]] == ["Newsletter"]


async def test_a_failing_command_mid_chain_stops_the_commands_after_it(client: httpx2.AsyncClient) -> None:
    body = await kartra(
        client,
        {
            "lead": {"email": "halted@example.com"},
            "actions": [
                {"cmd": "create_lead"},
                {"cmd": "assign_tag", "tag_name": "No Such Tag"},
                {"cmd": "subscribe_lead_to_list", "list_name": "Newsletter"},
            ],
        },
    )
    assert [(cmd, answer["status"]) for cmd, answer in _slots(body)] == [
        ("create_lead", "Success"),
        ("assign_tag", "Error"),
    ]
    assert _slots(body)[1][1]["type"] == "212"
    details = await lead(client, email="halted@example.com")  # what ran before the failure stays done
    assert details["tags"] == []
    assert details["lists"] == []


async def test_a_chain_on_a_new_lead_must_start_with_create_lead(client: httpx2.AsyncClient, sandbox: Sandbox) -> None:
    before = snapshot(sandbox)
    body = await kartra(
        client,
        {
            "lead": {"email": "late@example.com"},
            "actions": [{"cmd": "assign_tag", "tag_name": "VIP"}, {"cmd": "create_lead"}],
        },
    )
    assert (body["status"], body["type"]) == ("Error", "243")
    assert snapshot(sandbox) == before


async def test_a_change_through_the_proxy_is_seen_by_an_action_run_and_back(client: httpx2.AsyncClient) -> None:
    await kartra(client, {"lead": {"id": "1"}, "actions": [{"cmd": "assign_tag", "tag_name": "Affiliate"}]})
    assert "Affiliate" in {t["tag_name"] for t in (await lead(client, lead_id="1"))["tags"]}

    score = int((await kartra(client, {"get_lead": {"id": "1"}}))["lead_details"]["score"])
    assert (await output(client, "give-points-to-lead", {"lead_id": "1", "points": 9}))["type"] == "105"
    assert int((await kartra(client, {"get_lead": {"id": "1"}}))["lead_details"]["score"]) == score + 9

    act = await client.post(
        "/act",
        json={
            "api": {
                "method": "POST",
                "path": "/api",
                "body": {"lead": {"id": "1"}, "actions": [{"cmd": "unassign_tag", "tag_name": "Affiliate"}]},
            }
        },
    )
    assert act.json()["output"]["actions"][0]["unassign_tag"]["type"] == "104"
    assert "Affiliate" not in {t["tag_name"] for t in (await lead(client, lead_id="1"))["tags"]}


async def test_the_lead_id_wins_over_the_email(client: httpx2.AsyncClient, samples: dict[str, Any]) -> None:
    other = samples["lead_with_membership"]
    scores = {n: (await lead(client, lead_id=n))["score"] for n in ("1", other["id"])}
    await kartra(
        client, {"lead": {"id": "1", "email": other["email"]}, "actions": [{"cmd": "give_points_to_lead", "points": 5}]}
    )
    assert int((await lead(client, lead_id="1"))["score"]) == int(scores["1"]) + 5
    assert (await lead(client, lead_id=other["id"]))["score"] == scores[other["id"]]


async def test_custom_fields_are_set_with_php_bracket_arrays_and_cleared_with_an_empty_value(
    client: httpx2.AsyncClient,
) -> None:
    raw = (
        "lead[email]=fields%40example.com"
        "&lead[custom_fields][0][field_identifier]=interests"
        "&lead[custom_fields][0][field_value][]=620&lead[custom_fields][0][field_value][]=623"
        "&lead[custom_fields][1][field_identifier]=bio&lead[custom_fields][1][field_value]=Writes+code"
        "&actions[0][cmd]=create_lead"
    )
    response = await client.post("/connections/kartra/proxy/api", content=raw, headers=FORM)
    assert response.json()["actions"][0]["create_lead"]["status"] == "Success"
    fields = {
        f["field_identifier"]: f["field_value"]
        for f in (await lead(client, email="fields@example.com"))["custom_fields"]
    }
    assert [o["option_value"] for o in fields["interests"]] == ["Marketing", "Memberships"]
    assert fields["bio"] == "Writes code"

    await kartra(
        client,
        {
            "lead": {
                "email": "fields@example.com",
                "custom_fields": [{"field_identifier": "interests", "field_value": ""}],
            },
            "actions": [{"cmd": "edit_lead"}],
        },
    )
    fields = {
        f["field_identifier"]: f["field_value"]
        for f in (await lead(client, email="fields@example.com"))["custom_fields"]
    }
    assert fields["interests"] == []
    assert fields["bio"] == "Writes code"


async def test_account_listings_answer_at_the_top_level(client: httpx2.AsyncClient) -> None:
    body = await kartra(client, {"actions": [{"cmd": "retrieve_account_tags"}, {"cmd": "retrieve_account_lists"}]})
    assert "VIP" in body["account_tags"]
    assert "Newsletter" in body["account_lists"]
    assert _slots(body) == [
        ("retrieve_account_tags", {"status": "Success"}),
        ("retrieve_account_lists", {"status": "Success"}),
    ]


async def test_search_lead_finds_the_lead_by_email_in_any_case_and_answers_in_its_slot(
    client: httpx2.AsyncClient, samples: dict[str, Any]
) -> None:
    shouted = samples["lead"]["email"].upper()
    body = await kartra(client, {"lead": {"email": shouted}, "actions": [{"cmd": "search_lead"}]})
    [(cmd, answer)] = _slots(body)
    assert (cmd, answer["lead_details"]["id"]) == ("search_lead", samples["lead"]["id"])


# Codes that only a raw call can reach: the actions' schemas keep such input from ever being sent.
RAW_REFUSALS = [
    pytest.param({"lead": {"id": "1"}, "actions": [{"cmd": "give_points_to_lead", "points": "ten"}]}, "227", id="227"),
    pytest.param(
        {"lead": {"id": "1"}, "actions": [{"cmd": "remove_points_from_lead", "points": "1.5"}]}, "228", id="228"
    ),
    pytest.param({"lead": {"id": "1"}, "actions": [{"cmd": "give_points_to_lead"}]}, "215", id="215"),
    pytest.param({"lead": {"id": "1"}, "actions": [{"cmd": "remove_points_from_lead", "points": ""}]}, "217", id="217"),
    pytest.param(
        {"actions": [{"cmd": "create_custom_field", "custom_field_identifier": "due", "custom_field_type": "date"}]},
        "265",
        id="265 custom field type",
    ),
    pytest.param({"lead": {"id": "1"}, "actions": [{"cmd": "delete_lead"}]}, "262", id="262 unknown cmd"),
    pytest.param({"lead": {"id": "1"}, "actions": [{"tag_name": "VIP"}]}, "254", id="254 a command without cmd"),
    pytest.param({"lead": {"id": "1"}}, "254", id="254 no actions"),
    pytest.param({"lead": "1", "actions": [{"cmd": "search_lead"}]}, "223", id="223 lead not an array"),
    pytest.param({"get_lead": "1"}, "236", id="236 get_lead not an array"),
    pytest.param({"lead": {"id": "1"}, "actions": "assign_tag"}, "224", id="224 actions not an array"),
    pytest.param({"actions": [{"cmd": "assign_tag", "tag_name": "VIP"}]}, "206", id="206 no lead"),
    pytest.param({"get_lead": {"first_name": "Henry"}}, "206", id="206 get_lead without id or email"),
    pytest.param({"lead": {"id": "abc"}, "actions": [{"cmd": "search_lead"}]}, "243", id="243 id not a number"),
    pytest.param(
        {"lead": {"first_name": "X"}, "actions": [{"cmd": "create_lead"}]}, "206", id="206 create without email"
    ),
    pytest.param(
        {
            "lead": {"email": "x@example.com", "custom_fields": [{"field_value": "x"}]},
            "actions": [{"cmd": "create_lead"}],
        },
        "271",
        id="271 custom field without identifier",
    ),
    pytest.param(
        {
            "lead": {"id": "1", "custom_fields": {"0": {"field_identifier": "bio", "field_value": {"a": "b"}}}},
            "actions": [{"cmd": "edit_lead"}],
        },
        "271",
        id="271 text field given a structure",
    ),
    pytest.param(
        {
            "actions": [
                {
                    "cmd": "refund_transaction",
                    "transaction_id": "<refundable_transaction.transaction_id>",
                    "refund_amount": "lots",
                }
            ]
        },
        "268",
        id="268 amount not a number",
    ),
    pytest.param(
        {
            "actions": [
                {
                    "cmd": "modify_subscription_status",
                    "subscription_id": "14801",
                    "subscription_status_modification": "stop",
                }
            ]
        },
        "274",
        id="274 unknown modification",
    ),
]


@pytest.mark.parametrize(("form", "code"), RAW_REFUSALS)
async def test_a_raw_call_kartra_refuses_answers_its_type_code_with_http_200_and_changes_nothing(
    client: httpx2.AsyncClient, sandbox: Sandbox, samples: dict[str, Any], form: dict[str, Any], code: str
) -> None:
    before = snapshot(sandbox)
    body = await kartra(client, fill(form, samples))
    answer = _slots(body)[-1][1] if "actions" in body else body
    assert (answer["status"], answer["type"]) == ("Error", code), body
    assert snapshot(sandbox) == before


async def test_a_form_body_and_its_json_twin_get_the_same_answer(client: httpx2.AsyncClient) -> None:
    form = {"lead": {"email": "twin@example.com"}, "actions": [{"cmd": "search_lead"}]}
    as_form = await client.post("/connections/kartra/proxy/api", content=phpform.encode(form), headers=FORM)
    as_json = await client.post("/connections/kartra/proxy/api", json=form)
    assert as_form.json() == as_json.json() == {"status": "Error", "message": "No lead found", "type": "243"}
