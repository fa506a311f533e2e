"""The proxy tool: any Kartra API call no action covers, through Membrane's connection proxy.

Membrane adds the connector's base URL and Kartra's credentials, so a request names only a
relative path. Anything that would leave Kartra's API or smuggle credentials is refused before
anything is sent: absolute URLs, other hosts, `..`, credential and routing headers, and Kartra's
own credential fields in the body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from kartra_mcp import phpform
from kartra_mcp.errors import ProxyRequestRefused
from kartra_mcp.tools.credentials import credential_paths, is_credential
from kartra_mcp.tools.kartra_ops import Invocation, command_problem, invocations_in_form
from kartra_mcp.tools.limits import MAX_DEPTH, text_depth
from kartra_mcp.tools.spec import Risk, Schema, ToolSpec

PROXY_TOOL = "kartra-api-request"
FORM = "application/x-www-form-urlencoded"

_FORBIDDEN_HEADERS = frozenset(
    {
        "authorization", "proxy-authorization", "cookie", "set-cookie", "host", "content-length", "connection",
        "transfer-encoding", "te", "upgrade", "keep-alive", "x-real-ip", "forwarded", "x-request-id",
        "x-api-key", "membrane-api-version",
    }
)  # fmt: skip
_FORBIDDEN_PREFIXES = ("x-forwarded-", "x-membrane-", "proxy-", "cf-", "x-amzn-")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Kartra's paths need nothing more: no percent-escapes, queries or parameters that could hide a request.
_PATH = re.compile(r"^[A-Za-z0-9._~/-]*$")
JSON = "application/json"
_MEDIA_TYPES = (FORM, JSON)
_MAX_DEPTH = 8
_COMMAND_KEYS = frozenset({"actions", "lead", "get_lead"})
_KEY = re.compile(r"^[A-Za-z0-9_]+$")

INPUT_SCHEMA: Schema = {
    "type": "object",
    "properties": {
        "method": {
            "type": "string",
            "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"],
            "default": "POST",
            "description": "HTTP method. Kartra's API takes POST for everything.",
        },
        "path": {
            "type": "string",
            "default": "/",
            "description": "Path relative to the Kartra connection's base URL; '/' is Kartra's API endpoint. "
            "Absolute URLs, other hosts and '..' are refused.",
        },
        "query": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Query string parameters.",
        },
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Extra headers. Credentials, cookies and routing headers are refused: Membrane adds "
            "Kartra's credentials itself.",
        },
        "body": {
            "anyOf": [{"type": "object"}, {"type": "string"}],
            "description": "An object is sent in Kartra's form encoding (PHP brackets), e.g. "
            '{"lead": {"email": "a@example.com"}, "actions": [{"cmd": "assign_tag", "tag_name": "VIP"}]} '
            'or {"get_lead": {"email": "a@example.com"}}; a string is sent as is. Never include api_key, '
            "api_password or app_id.",
        },
    },
    "additionalProperties": False,
}

DESCRIPTION = (
    "Send a raw request to Kartra's API through the Membrane connection, for anything no other tool covers. "
    "Kartra's API is one POST endpoint ('/') whose body names one lead (lead[email] or lead[id]) and the commands "
    "to run (actions[N][cmd]: e.g. get_lead via get_lead[email], assign_tag, subscribe_lead_to_list, "
    "give_points_to_lead, refund_transaction, cancel_transaction, get_subscription_details). Every outcome is "
    "HTTP 200; failures carry status 'Error', a message and a numeric type. The request is classed by the "
    "commands in its body: one that refunds, cancels or revokes needs the same confirmation as the action tool "
    "that does it, and an unknown command is treated as critical."
)


def proxy_spec() -> ToolSpec:
    return ToolSpec(
        name=PROXY_TOOL,
        title="Kartra API request",
        description=DESCRIPTION,
        input_schema=INPUT_SCHEMA,
        # The listed risk is the worst case; each call is classed by what its body runs.
        risk=Risk.CRITICAL,
        kind="proxy",
    )


@dataclass(frozen=True)
class ProxyRequest:
    """A checked proxy request, ready to send: its body is exactly the form that was classified."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes | None
    invocations: list[Invocation]
    form: Mapping[str, Any] | None = None

    @property
    def risk(self) -> Risk:
        if self.method in ("GET", "HEAD") and not self.body:
            return Risk.READ
        if self.method != "POST" or not self.invocations:
            return Risk.CRITICAL
        return Risk.highest([i.risk for i in self.invocations])

    def as_sent(self) -> dict[str, Any]:
        """The request as it goes out, body decoded into its fields: what the audit log records."""
        sent: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.query:
            sent["query"] = dict(self.query)
        if self.headers:
            sent["headers"] = dict(self.headers)
        if self.form is not None:
            sent["body"] = self.form
        return sent


def build_request(arguments: Mapping[str, Any]) -> ProxyRequest:
    """Check and encode the proxy tool's arguments; refuse what must not be sent.

    What is classified is what is sent: a form body is decoded, checked and encoded again in one
    canonical form, so no difference between parsers can hide a command from the classification.
    """
    method = str(arguments.get("method", "POST")).upper()
    path = _check_path(str(arguments.get("path", "/")))
    headers = _check_headers({str(k): str(v) for k, v in (arguments.get("headers") or {}).items()})
    query = {str(k): str(v) for k, v in (arguments.get("query") or {}).items()}
    _check_query(query)
    body_arg = arguments.get("body")
    if body_arg is not None and method in ("GET", "HEAD"):
        raise ProxyRequestRefused(f"A {method} request carries no body; use 'query', or method POST.")
    if body_arg is None:
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        return ProxyRequest(method, path, query, headers, None, [])
    media_type = _media_type(headers)
    # Exactly one Content-Type goes out, spelled canonically, so every parser reads the body alike.
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = media_type
    form: Any = body_arg
    if isinstance(body_arg, str):
        if text_depth(body_arg) > MAX_DEPTH:
            raise ProxyRequestRefused(f"The body nests deeper than {MAX_DEPTH} levels; Kartra's fields never do.")
        try:
            form = json.loads(body_arg) if media_type == JSON else phpform.decode(body_arg)
        except ValueError:
            raise ProxyRequestRefused("The body is not valid JSON, as its Content-Type says it is.") from None
    if not isinstance(form, Mapping):
        raise ProxyRequestRefused("The body must be an object (or a form string) naming Kartra's fields.")
    _check_credentials(form)
    _check_keys(form, "body", 0)
    body = (json.dumps(form) if media_type == JSON else phpform.encode(form)).encode()
    invocations = invocations_in_form(form)
    if invocations is None:
        raise ProxyRequestRefused("'actions' must be a list of objects, each with its 'cmd'.")
    for invocation in invocations:
        problem = command_problem(invocation.cmd)
        if problem is not None:
            raise ProxyRequestRefused(f"{problem} Nothing was sent.")
    return ProxyRequest(method, path, query, headers, body, invocations, form)


def _media_type(headers: Mapping[str, str]) -> str:
    """The body's media type: form encoding unless the request says JSON; anything else is refused."""
    given = [v for k, v in headers.items() if k.lower() == "content-type"]
    if not given:
        return FORM
    media_types = {v.split(";", 1)[0].strip().lower() for v in given}
    if len(media_types) != 1 or not media_types <= set(_MEDIA_TYPES):
        raise ProxyRequestRefused(f"Content-Type must be one of {', '.join(_MEDIA_TYPES)}; Kartra reads forms.")
    return media_types.pop()


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        lowered = name.lower()
        if not _HEADER_NAME.match(name) or not value.isascii() or any(c in value for c in "\r\n\0"):
            raise ProxyRequestRefused(f"Header {name!r} is not a valid HTTP header (ASCII only); remove it.")
        if lowered in _FORBIDDEN_HEADERS or lowered.startswith(_FORBIDDEN_PREFIXES) or is_credential(name):
            raise ProxyRequestRefused(
                f"Header {name!r} is not allowed: Membrane adds Kartra's credentials and "
                "routing headers itself. Remove it and call again."
            )
    return headers


def _check_query(query: Mapping[str, str]) -> None:
    _check_credentials(query)
    for key in query:
        root = key.partition("[")[0].strip().casefold()
        if root in _COMMAND_KEYS or not _KEY.match(key):
            raise ProxyRequestRefused(
                f"Query parameter {key!r} is not allowed: put Kartra's lead, get_lead and actions in the body, "
                "where they are checked."
            )


def _check_keys(value: Any, where: str, depth: int) -> None:
    """Every key a plain identifier: PHP reads odd keys (spaces, dots, brackets) its own way."""
    if depth > _MAX_DEPTH:
        raise ProxyRequestRefused(f"The {where.split('.')[0]} nests deeper than Kartra's fields ever do.")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not _KEY.match(str(key)):
                raise ProxyRequestRefused(
                    f"Key {key!r} in the {where} is not allowed: Kartra's field names are letters, digits and "
                    "underscores."
                )
            _check_keys(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_keys(item, f"{where}[{index}]", depth + 1)


def _check_path(path: str) -> str:
    raw = path.strip()
    decoded = unquote(unquote(raw))
    if "://" in decoded or raw.startswith("//") or decoded.startswith("//") or "\\" in decoded:
        raise ProxyRequestRefused(
            "Absolute URLs and other hosts are not allowed: give a path relative to Kartra's API, such as '/'."
        )
    if not _PATH.match(raw):
        raise ProxyRequestRefused(
            f"Path {raw!r} is not allowed: a path has letters, digits, '/', '.', '-', '_' and '~' only; put "
            "parameters in 'query' and Kartra's fields in the body."
        )
    if any(segment in ("..", ".") for segment in decoded.split("/")):
        raise ProxyRequestRefused("Paths with '..' or '.' segments are not allowed.")
    return "/" + raw.lstrip("/")


def _check_credentials(form: Mapping[str, Any]) -> None:
    found = credential_paths(form)
    if found:
        raise ProxyRequestRefused(
            f"Remove {', '.join(found)} from the request: Membrane adds Kartra's credentials "
            "itself, and they must never pass through the assistant."
        )
