"""The approval page: one page per pending call, with Approve and Decline, and the inbox that lists them.

Self-contained HTML (no external assets, works offline, readable on a phone, plain buttons in a
form so the keyboard works). An answer is a POST that must come from the page's own origin and
carry the page's secret (from its link) or, where an approver credential is configured, the
approver's cookie and the page's CSRF token. Every refused answer is audited by `Approvals`.
"""

from __future__ import annotations

import contextlib
import html
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kartra_mcp.errors import ConfirmationInvalid, StateUnavailable
from kartra_mcp.tools.approval.service import Approvals
from kartra_mcp.tools.approval.store import Approval
from kartra_mcp.tools.spec import Risk

COOKIE = "kartra_mcp_approver"
PREFIX = "/approvals"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # not no-referrer: that makes browsers send `Origin: null` on the POST
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_STYLE = """
:root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fafafa;--card:#fff;--line:#d4d4d4;--warn:#9a3412;--ok:#166534}
@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#161616;--card:#222;--line:#444;--warn:#fdba74;--ok:#86efac}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:40rem;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.5rem 0}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.6rem;padding:1rem;margin:.8rem 0}
.summary{font-weight:600;font-size:1.1rem;margin:0 0 .5rem}ul{padding-left:1.2rem;margin:.3rem 0}
.warn{color:var(--warn);font-weight:600}.ok{color:var(--ok);font-weight:600}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0}dt{opacity:.75}
dd{margin:0;overflow-wrap:anywhere}code{overflow-wrap:anywhere}
.buttons{display:flex;gap:.8rem;flex-wrap:wrap;margin-top:1rem}
button{font:inherit;font-weight:600;padding:.7rem 1.6rem;border-radius:.5rem;border:2px solid var(--fg);
cursor:pointer;min-width:8rem}button:focus-visible{outline:3px solid #2563eb;outline-offset:2px}
#approve{background:#166534;color:#fff;border-color:#166534}#decline{background:transparent;color:var(--fg)}
input[type=password]{font:inherit;padding:.5rem;width:100%;margin:.4rem 0}
.muted{opacity:.75;font-size:.9rem}.card>h2:first-child{margin-top:0}summary{cursor:pointer;font-weight:600}
details[open] summary{margin-bottom:.5rem}
"""
_COUNTDOWN = """
(function(){var el=document.getElementById('left');if(!el)return;var end=Number(el.dataset.end)*1000;
function tick(){var s=Math.max(0,Math.round((end-Date.now())/1000));
el.textContent=s>0?Math.floor(s/60)+' min '+('0'+s%60).slice(-2)+' s':'expired';
if(s<=0){document.querySelectorAll('button').forEach(function(b){b.disabled=true});}}
tick();setInterval(tick,1000);})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _document(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body><main>{body}</main>"
        f"<script>{_COUNTDOWN}</script></body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def _stakes(risk: Risk) -> str:
    return {
        Risk.CRITICAL: "This moves money, ends a subscription or removes paid access. It cannot be undone.",
        Risk.DESTRUCTIVE: "This removes something from the Kartra account.",
    }.get(risk, "This changes the Kartra account.")


def _preview_html(text: str) -> str:
    lines = text.splitlines()
    summary = lines[0] if lines else ""
    details = [line[2:] for line in lines[1:] if line.startswith("- ")]
    rest = [line for line in lines[1:] if not line.startswith("- ")]
    parts = [f'<p class="summary">{_e(summary)}</p>']
    if details:
        parts.append("<ul>" + "".join(f"<li>{_e(d)}</li>" for d in details) + "</ul>")
    parts.extend(f'<p class="warn">{_e(r)}</p>' for r in rest)
    return "".join(parts)


def _facts_html(facts: Mapping[str, Any]) -> str:
    rows = []
    for key, value in facts.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        rows.append(f"<dt>{_e(key.replace('_', ' '))}</dt><dd>{_e(shown)}</dd>")
    return f"<dl>{''.join(rows)}</dl>" if rows else ""


def approval_page(approval: Approval, *, secret: str | None, csrf: str, now: float) -> HTMLResponse:
    """The page a person answers on."""
    until = time.strftime("%H:%M:%S UTC", time.gmtime(approval.expires_at))
    left = max(0, int(approval.expires_at - now))
    hidden = (f'<input type="hidden" name="k" value="{_e(secret)}">' if secret else "") + (
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
    )
    facts = _facts_html(approval.facts)
    body = (
        f"<h1>An AI assistant asks to run <code>{_e(approval.tool)}</code> on your Kartra account</h1>"
        f'<p class="warn">{_e(_stakes(approval.risk))}</p>'
        f'<section class="card" aria-labelledby="what"><h2 id="what">What it will do</h2>'
        f"{_preview_html(approval.preview_text)}</section>"
        '<section class="card" aria-labelledby="answer"><h2 id="answer">Your answer</h2><ul>'
        "<li><strong>Approve</strong>: kartra-mcp runs exactly this call, once, now.</li>"
        "<li><strong>Decline</strong>: nothing is sent to Kartra; the assistant is told you declined.</li></ul>"
        f'<p>Time left: <strong id="left" data-end="{approval.expires_at:.0f}">{left // 60} min '
        f"{left % 60:02d} s</strong> (until {until}). After that this page no longer works and nothing runs.</p>"
        f'<form method="post" action="{PREFIX}/{_e(approval.id)}">{hidden}<div class="buttons">'
        '<button type="submit" name="answer" value="approve" id="approve">Approve</button>'
        '<button type="submit" name="answer" value="decline" id="decline">Decline</button>'
        "</div></form></section>"
        + (f'<details class="card"><summary>Every fact behind the preview</summary>{facts}</details>' if facts else "")
        + f'<p class="muted">Approval {_e(approval.id)}. This page works once.</p>'
    )
    return _document(f"Approve or decline: {approval.tool}", body)


def _answered(approval: Approval) -> HTMLResponse:
    if approval.state == "approved":
        outcome = approval.result.text if approval.result else "The assistant's call goes ahead now."
        body = (
            f'<h1 class="ok" id="outcome">Approved</h1><p>{_e(approval.tool)} was approved.</p>'
            f'<section class="card"><h2>Outcome</h2><p id="result">{_e(outcome)}</p></section>'
        )
    else:
        body = f'<h1 id="outcome">Declined</h1><p>Nothing was sent to Kartra for {_e(approval.tool)}.</p>'
    return _document(f"{approval.state.capitalize()}: {approval.tool}", body)


def _refused(reason: str, status: int = 403) -> HTMLResponse:
    body = f'<h1 id="outcome">This approval cannot be used</h1><p id="reason">{_e(reason)}</p>'
    return _document("Approval refused", body, status=status)


Endpoint = Callable[[Request], Awaitable[Response]]


def _unless_unavailable(endpoint: Endpoint) -> Endpoint:
    """The page, or (when the shared store cannot be reached) a page that says so: nothing was answered or run."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except StateUnavailable as exc:
            return _refused(str(exc), 503)

    return guarded


class ApprovalPages:
    """The page routes over one `Approvals`: `/approvals` (the inbox) and `/approvals/{id}`."""

    def __init__(self, approvals: Approvals) -> None:
        self.approvals = approvals

    def routes(self) -> list[Route]:
        return [
            Route(PREFIX, _unless_unavailable(self.inbox), methods=["GET"]),
            Route(f"{PREFIX}/login", _unless_unavailable(self.login), methods=["POST"]),
            Route(PREFIX + "/{approval_id}", _unless_unavailable(self.page), methods=["GET"]),
            Route(PREFIX + "/{approval_id}", _unless_unavailable(self.submit), methods=["POST"]),
        ]

    def _own_origin(self, request: Request) -> str:
        if self.approvals.base_url:
            scheme, _, rest = self.approvals.base_url.partition("://")
            return f"{scheme}://{rest.split('/')[0]}"
        return f"{request.url.scheme}://{request.headers.get('host', '')}"

    async def _is_approver(self, request: Request) -> bool:
        return self.approvals.needs_approver and await self.approvals.is_approver_cookie(request.cookies.get(COOKIE))

    def _login_form(self, after: str, *, wrong: bool = False) -> HTMLResponse:
        note = '<p class="warn" id="reason">That is not the approver token.</p>' if wrong else ""
        body = (
            "<h1>kartra-mcp approvals</h1><p>Enter the approver token (KARTRA_MCP_APPROVER_TOKEN) to see and "
            f"answer pending calls.</p>{note}"
            f'<form method="post" action="{PREFIX}/login"><input type="hidden" name="next" value="{_e(after)}">'
            '<label for="token">Approver token</label><input type="password" id="token" name="token" '
            'autocomplete="current-password" autofocus><div class="buttons">'
            '<button type="submit" id="login">Sign in</button></div></form>'
        )
        return _document("Approver sign-in", body, status=401 if wrong else 200)

    async def inbox(self, request: Request) -> Response:
        if not self.approvals.needs_approver:
            return _refused("There is no inbox here; each approval has its own link.", 404)
        if not await self._is_approver(request):
            return self._login_form(PREFIX)
        now = self.approvals.now()
        items = sorted(await self.approvals.store.pending(), key=lambda a: a.expires_at)
        rows = "".join(
            f'<li class="card"><a href="{PREFIX}/{_e(a.id)}">{_e(a.tool)}</a>: '
            f"{_e(a.preview_text.splitlines()[0] if a.preview_text else '')} "
            f'<span class="muted">({max(0, int(a.expires_at - now))} s left)</span></li>'
            for a in items
        )
        body = "<h1>Pending approvals</h1>" + (
            f'<ul id="pending">{rows}</ul>' if rows else '<p id="empty">Nothing is waiting for an answer.</p>'
        )
        return _document("kartra-mcp approvals", body)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        after = str(form.get("next") or PREFIX)
        if not after.startswith(PREFIX):
            after = PREFIX
        if request.headers.get("origin") != self._own_origin(request):
            return _refused("The sign-in did not come from this page's own origin.")
        if not self.approvals.is_approver_token(str(form.get("token") or "")):
            return self._login_form(after, wrong=True)
        response = RedirectResponse(after, status_code=303, headers=HEADERS)
        response.set_cookie(
            COOKIE,
            await self.approvals.approver_cookie(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=PREFIX,
            max_age=8 * 3600,
        )
        return response

    async def page(self, request: Request) -> Response:
        approval = await self.approvals.store.get(request.path_params["approval_id"])
        secret = request.query_params.get("k")
        if self.approvals.needs_approver and not await self._is_approver(request):
            return self._login_form(request.url.path + (f"?k={secret}" if secret else ""))
        if approval is None or not (await self._is_approver(request) or (secret and approval.matches(secret))):
            via = approval.channel if approval else "browser"
            with contextlib.suppress(ConfirmationInvalid):  # refused and audited; the page says so below
                await self.approvals.refuse(approval, "a forged or mistyped link was opened", via, None)
            return _refused("This link is not valid: it is forged, mistyped, or from before a restart.", 404)
        if approval.state != "pending":
            return _answered(approval) if approval.state != "expired" else _refused("This approval expired.", 410)
        if self.approvals.now() > approval.expires_at:
            return _refused("This approval expired; nothing was run.", 410)
        return approval_page(
            approval, secret=secret, csrf=await self.approvals.csrf(approval.id), now=self.approvals.now()
        )

    async def submit(self, request: Request) -> Response:
        approval_id = request.path_params["approval_id"]
        approval = await self.approvals.store.get(approval_id)
        via = approval.channel if approval else "browser"
        approver = await self._is_approver(request)
        who = "approver" if approver else "person"
        by = f"{who} at {request.client.host if request.client else '?'}"
        form = await request.form()
        try:
            origin = request.headers.get("origin")
            if origin != self._own_origin(request):
                await self.approvals.refuse(approval, f"the answer came from another origin ({origin!r})", via, by)
            if str(form.get("csrf") or "") != await self.approvals.csrf(approval_id):
                await self.approvals.refuse(approval, "the answer did not come from the approval page (CSRF)", via, by)
            if self.approvals.needs_approver and not approver:
                await self.approvals.refuse(approval, "the approver credential is missing", via, by)
            answer = str(form.get("answer") or "")
            if answer not in ("approve", "decline"):
                await self.approvals.refuse(approval, f"unknown answer {answer[:20]!r}", via, by)
            settled = await self.approvals.answer(
                approval_id,
                approve=answer == "approve",
                via=via,
                by=by,
                secret=str(form.get("k") or "") or None,
                approver=approver,
            )
        except ConfirmationInvalid as exc:
            return _refused(str(exc))
        return _answered(settled)
