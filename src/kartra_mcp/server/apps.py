"""Channel 2: MCP Apps (`io.modelcontextprotocol/ui`), for clients that declare the extension.

A tool that may need confirmation carries `_meta.ui.resourceUri` pointing at the approval view
(`ui://kartra-mcp/approval`, served as `text/html;profile=mcp-app`). Its pending result carries the
preview for the model and, in the result's `_meta` only, the approval id and a single-use secret:
per the MCP Apps specification (2026-01-26, "Data Passing"), hosts pass the whole result to the
view in `ui/notifications/tool-result`, while `_meta` is "not intended for model context". The
view's Approve and Decline buttons call `approval-answer`, an app-only tool
(`_meta.ui.visibility: ["app"]`, which hosts keep out of the model's tool list) that also needs
that secret. A client that does not declare the extension is never shown that tool.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID, client_supports_apps
from mcp.types import ReadResourceResult, Resource, ResourceTemplate, TextResourceContents

from kartra_mcp.tools.approval import Approvals, pending_result
from kartra_mcp.tools.call import Answer, ChannelName, ConfirmationRequest, Pending, Unavailable

VIEW_URI = "ui://kartra-mcp/approval"
META_KEY = "kartra-mcp/approval"
TOOL_UI_META: dict[str, Any] = {"ui": {"resourceUri": VIEW_URI}}
APP_ONLY_META: dict[str, Any] = {"ui": {"resourceUri": VIEW_URI, "visibility": ["app"]}}
RESOURCE_META: dict[str, Any] = {"ui": {"prefersBorder": True}}

__all__ = [
    "APP_MIME_TYPE",
    "APP_ONLY_META",
    "EXTENSION_ID",
    "META_KEY",
    "TOOL_UI_META",
    "VIEW_URI",
    "AppChannel",
    "ApprovalViewSource",
    "client_supports_apps",
    "view_html",
]


class AppChannel:
    """Returns a pending result that the host renders as the approval view."""

    def __init__(self, ctx: ServerRequestContext[Any, Any], approvals: Approvals) -> None:
        self._ctx = ctx
        self._approvals = approvals

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        if not client_supports_apps(self._ctx):
            return Unavailable()
        approval, secret = await self._approvals.open(request, "app", on_answer="run")
        base = pending_result(approval, "in the approval view shown with this result")
        meta = {
            META_KEY: {
                "approval_id": approval.id,
                "secret": secret,
                "tool": approval.tool,
                "risk": approval.risk.value,
                "preview": approval.preview_text,
                "facts": dict(approval.facts),
                "expires_at": approval.expires_at,
            }
        }
        channel: ChannelName = "app"
        return Pending(channel, replace(base, meta=meta))


_VIEW = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Approve or decline</title>
<style>
:root{color-scheme:light dark}body{margin:0;font:15px/1.5 var(--font-sans,system-ui,sans-serif);
color:var(--color-text-primary,CanvasText);background:var(--color-background-primary,Canvas)}
main{padding:.9rem;max-width:40rem}h1{font-size:1.1rem;margin:.2rem 0 .6rem}
.summary{font-weight:600}.warn{color:#b45309;font-weight:600}ul{padding-left:1.2rem;margin:.3rem 0}
.buttons{display:flex;gap:.7rem;flex-wrap:wrap;margin-top:.8rem}
button{font:inherit;font-weight:600;padding:.6rem 1.4rem;border-radius:.45rem;border:2px solid currentColor;
cursor:pointer;min-width:7rem}button:focus-visible{outline:3px solid #2563eb;outline-offset:2px}
#approve{background:#166534;color:#fff;border-color:#166534}#decline{background:transparent;color:inherit}
#outcome{font-weight:600;margin-top:.8rem}
</style></head><body><main aria-live="polite">
<h1 id="title">Waiting for the call's details...</h1>
<div id="preview"></div>
<ul><li><strong>Approve</strong>: kartra-mcp runs exactly this call, once, now.</li>
<li><strong>Decline</strong>: nothing is sent to Kartra.</li></ul>
<p id="left"></p>
<div class="buttons"><button id="approve" disabled>Approve</button><button id="decline" disabled>Decline</button></div>
<p id="outcome"></p></main>
<script>
(function(){
var next=1,waiting={},approval=null;
function send(msg){window.parent.postMessage(msg,"*");}
function request(method,params){var id=next++;send({jsonrpc:"2.0",id:id,method:method,params:params});
return new Promise(function(ok,fail){waiting[id]={ok:ok,fail:fail};});}
function el(tag,text,cls){var e=document.createElement(tag);e.textContent=text;if(cls)e.className=cls;return e;}
function show(a){approval=a;document.getElementById("title").textContent=
"An AI assistant asks to run "+a.tool+" on your Kartra account";
var box=document.getElementById("preview");box.textContent="";var lines=String(a.preview||"").split("\\n");
box.appendChild(el("p",lines[0]||"","summary"));var ul=document.createElement("ul");
lines.slice(1).forEach(function(l){if(l.indexOf("- ")===0){ul.appendChild(el("li",l.slice(2)));}
else if(l){box.appendChild(el("p",l,"warn"));}});box.insertBefore(ul,box.children[1]||null);
tick();setInterval(tick,1000);
document.getElementById("approve").disabled=false;document.getElementById("decline").disabled=false;}
function tick(){if(!approval)return;var s=Math.max(0,Math.round(approval.expires_at-Date.now()/1000));
document.getElementById("left").textContent=s>0?"Time left: "+Math.floor(s/60)+" min "+("0"+s%60).slice(-2)+" s":
"This approval expired; nothing runs.";if(s<=0)done();}
function done(){document.getElementById("approve").disabled=true;document.getElementById("decline").disabled=true;}
function answer(which){if(!approval)return;done();
request("tools/call",{name:"approval-answer",arguments:{approval_id:approval.approval_id,
secret:approval.secret,answer:which}}).then(function(r){var t=(r&&r.content&&r.content[0]&&r.content[0].text)||"";
document.getElementById("outcome").textContent=(which==="approve"?"Approved. ":"Declined. ")+t;},
function(e){document.getElementById("outcome").textContent="Could not send the answer: "+(e&&e.message||e);});}
document.getElementById("approve").addEventListener("click",function(){answer("approve");});
document.getElementById("decline").addEventListener("click",function(){answer("decline");});
window.addEventListener("message",function(event){var m=event.data;if(!m||m.jsonrpc!=="2.0")return;
if(m.id!==undefined&&waiting[m.id]&&!m.method){var w=waiting[m.id];delete waiting[m.id];
if(m.error)w.fail(m.error);else w.ok(m.result);return;}
if(m.method==="ui/notifications/tool-result"){var meta=(m.params&&m.params._meta)||{};
if(meta["kartra-mcp/approval"])show(meta["kartra-mcp/approval"]);}});
request("ui/initialize",{appCapabilities:{},appInfo:{name:"kartra-mcp approval",version:"1"},
protocolVersion:"2026-01-26"}).then(function(){send({jsonrpc:"2.0",method:"ui/notifications/initialized",params:{}});});
})();
</script></body></html>"""


def view_html() -> str:
    """The approval view: self-contained, no network, the preview rendered as text (never as HTML)."""
    return _VIEW


class ApprovalViewSource:
    """The `ui://` view as a resource source. It is not listed (the specification lets servers omit
    UI-only resources; hosts find it through the tools' `_meta.ui`), only read."""

    def resources(self) -> list[Resource]:
        return []

    def templates(self) -> list[ResourceTemplate]:
        return []

    async def read(self, uri: str) -> ReadResourceResult | None:
        if uri != VIEW_URI:
            return None
        contents = TextResourceContents(uri=VIEW_URI, mime_type=APP_MIME_TYPE, text=view_html(), meta=RESOURCE_META)
        return ReadResourceResult(contents=[contents])

    def changed_by_calls(self) -> list[str]:
        return []
