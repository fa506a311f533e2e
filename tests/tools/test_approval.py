"""Approvals without MCP: answered once, bound to their call, every refusal audited; the inbox keeps a
call whose webhook is down; check-approval reports and approves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from kartra_mcp.errors import ConfirmationInvalid
from kartra_mcp.tools.approval import Approvals, InboxChannel
from kartra_mcp.tools.audit import AuditLog
from kartra_mcp.tools.builtin import check_approval
from kartra_mcp.tools.call import ConfirmationRequest, Pending
from kartra_mcp.tools.preview import Preview
from kartra_mcp.tools.spec import Risk
from tests.pending_bound import LIMIT, Clock, check_approvals_bound
from tests.processes import free_port


def _request(expires_at: float = 2e9) -> ConfirmationRequest:
    preview = Preview("Refund 67.00 USD to Ann <ann@example.com>", ["Product: Masterclass"], "Cannot be undone.")
    return ConfirmationRequest(
        "refund-transaction", Risk.CRITICAL, preview, "id", expires_at, {"transaction_id": "7"}, "c1"
    )


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.sqlite3")


async def test_an_approval_is_answered_once_and_every_other_answer_is_refused_and_audited(audit: AuditLog) -> None:
    approvals = Approvals(audit)
    approval, secret = await approvals.open(_request(), "browser", on_answer="wait")
    with pytest.raises(ConfirmationInvalid, match="forged"):
        await approvals.answer(approval.id, approve=True, via="browser", by="x", secret="not-" + secret)
    answered = await approvals.answer(approval.id, approve=False, via="browser", by="person", secret=secret)
    with pytest.raises(ConfirmationInvalid, match="already declined"):
        await approvals.answer(approval.id, approve=True, via="browser", by="person", secret=secret)
    with pytest.raises(ConfirmationInvalid, match="unknown approval"):
        await approvals.answer("ap_0000000000000000", approve=True, via="browser", by="x", secret=secret)
    assert (answered.state, answered.answered_by) == ("declined", "person")
    rows = audit.rows()
    assert [(r.outcome, r.confirmation) for r in rows] == [("refused", "browser")] * 3
    assert secret not in str([r.as_dict() for r in rows])


async def test_an_expired_approval_cannot_be_answered(audit: AuditLog) -> None:
    now = [1000.0]
    approvals = Approvals(audit, ttl=300, clock=lambda: now[0])
    approval, secret = await approvals.open(_request(expires_at=1300.0), "browser", on_answer="wait")
    now[0] = 1301.0
    with pytest.raises(ConfirmationInvalid, match="expired"):
        await approvals.answer(approval.id, approve=True, via="browser", by="person", secret=secret)
    assert approval.state == "expired"


async def test_the_inbox_keeps_a_call_whose_webhook_is_down(audit: AuditLog) -> None:
    approvals = Approvals(audit, approver_token="approver")
    approvals.base_url = "http://127.0.0.1:9"
    channel = InboxChannel(approvals, webhook=f"http://127.0.0.1:{free_port()}/nobody-listens", timeout=2)
    answer = await channel.confirm(_request())
    assert isinstance(answer, Pending) and answer.result.structured is not None
    approval_id = answer.result.structured["approval_id"]
    assert [a.id for a in (await approvals.store.pending())] == [approval_id]
    checked = await check_approval(approvals, approval_id, "c1")
    assert checked.structured is not None and checked.structured["state"] == "pending"
    with pytest.raises(ConfirmationInvalid):
        await check_approval(approvals, approval_id, "another-connection")


async def test_a_connection_with_the_most_approvals_pending_gets_no_new_one_until_one_is_answered_or_expires(
    audit: AuditLog,
) -> None:
    clock = Clock()
    await check_approvals_bound(Approvals(audit, ttl=300, clock=clock, limit=LIMIT), clock)
