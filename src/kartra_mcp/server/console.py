"""What the command line shows a person: how much it logs, tables, and a countdown.

Standard library only, so `--help` and the light commands stay quick to start.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

_NUMBER = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}
LEVELS = tuple(_NUMBER)
# Transport and framework loggers: at DEBUG they print dozens of lines per request, none of them ours.
QUIET = ("httpx2", "httpcore2", "mcp", "uvicorn.access", "asyncio", "sse_starlette", "multipart")
SERVING = ("serve", "sandbox")


def log_level(command: str, *, flag: str | None, verbose: int, configured: str | None) -> int:
    """The level for `command`: --log-level, else each -v one step below its default, else
    KARTRA_MCP_LOG_LEVEL, else INFO while serving and WARNING for one-shot commands."""
    if flag:
        return _NUMBER[flag.upper()]
    default = logging.INFO if command in SERVING else logging.WARNING
    if verbose:
        return max(logging.DEBUG, default - 10 * verbose)
    if configured:
        return _NUMBER[configured.upper()]
    return default


def setup_logging(level: int) -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level))


def table(rows: Sequence[Mapping[str, str]], columns: Sequence[tuple[str, str]]) -> list[str]:
    """`rows` as lines under a header, each column as wide as its widest cell; the last is not padded."""
    widths = {key: max([len(title), *(len(row[key]) for row in rows)]) for key, title in columns}
    *padded, (last_key, _) = columns

    def line(cells: Mapping[str, str]) -> str:
        return "  ".join([*(cells[key].ljust(widths[key]) for key, _ in padded), cells[last_key]]).rstrip()

    return [line(dict(columns)), *(line(row) for row in rows)]


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def clock(seconds: float) -> str:
    whole = max(0, int(seconds + 0.999))
    return f"{whole // 60}:{whole % 60:02d}"


class Countdown:
    """Time left, redrawn in place on a terminal; otherwise a plain line now and then."""

    def __init__(self, stream: TextIO, *, every: float = 60.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every = every
        self._last_line: float | None = None

    def show(self, left: float) -> None:
        if self._tty:
            self._stream.write(f"\r  {clock(left)} left (Ctrl-C to stop) ")
        elif self._last_line is None:
            self._last_line = left  # the line that showed the link said how long it waits
        elif self._last_line - left >= self._every:
            self._last_line = left
            self._stream.write(f"  still waiting, {clock(left)} left\n")
        self._stream.flush()

    def end(self) -> None:
        if self._tty:
            self._stream.write("\r\033[K")
            self._stream.flush()


# The environment variables each command reads, named in its --help.
_CREDENTIALS = (
    ("MEMBRANE_TOKEN", "a Membrane token, or instead the three below, which mint tokens as needed"),
    ("MEMBRANE_WORKSPACE_KEY", "workspace key"),
    ("MEMBRANE_WORKSPACE_SECRET", "workspace secret"),
    ("MEMBRANE_TENANT_KEY", "the tenant to act for"),
    ("MEMBRANE_API_URL", "Membrane's API (default https://api.getmembrane.com)"),
    ("KARTRA_MCP_REQUEST_TIMEOUT", "seconds to wait for one Membrane request (default 65)"),
)
_RUNNING = (
    ("KARTRA_MCP_CONNECTION_ID", "the Kartra connection (default: the only connected one)"),
    ("KARTRA_MCP_POLICY", "policy file, as --policy"),
    ("KARTRA_MCP_READ_ONLY", "true: only reads, as --read-only"),
    ("KARTRA_MCP_KILL_SWITCH", "true: only reads, whatever the policy says"),
    ("KARTRA_MCP_TOOL_MODE", "actions or search, as --tool-mode"),
    ("KARTRA_MCP_AUDIT_DB", "the audit log (SQLite)"),
    ("KARTRA_MCP_AUDIT_DSN", "PostgreSQL for the audit log instead"),
    ("KARTRA_MCP_REDIS_URL", "Redis shared by replicas (confirmations, approvals, the hourly cap, refund holds)"),
    ("KARTRA_MCP_CACHE_DIR", "where the catalog of actions is cached"),
)
_LOGGING = (("KARTRA_MCP_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR, as --log-level"),)
ENVIRONMENT: dict[str, tuple[tuple[str, str], ...]] = {
    "serve": (
        *_CREDENTIALS,
        *_RUNNING,
        ("KARTRA_MCP_START_TIMEOUT", "seconds to wait for Membrane at a start with no cached catalog"),
        ("KARTRA_MCP_HTTP_TOKEN", "HTTP: the bearer token clients must send"),
        ("KARTRA_MCP_AUTH", "HTTP: token or membrane, as --auth"),
        ("KARTRA_MCP_APPROVER_TOKEN", "HTTP: turns on the approval inbox; what a person enters to answer"),
        ("KARTRA_MCP_APPROVAL_WEBHOOK", "HTTP: a URL told of each call waiting for a person"),
        ("KARTRA_MCP_APPROVAL_TIMEOUT", "seconds a call waits for an answer on the approval page"),
        ("KARTRA_MCP_PUBLIC_URL", "HTTP: the address clients reach this server at"),
        ("KARTRA_MCP_TOKEN_CACHE_TTL", "--auth membrane: seconds a verified token is remembered"),
        ("KARTRA_MCP_TENANT_TTL", "--auth membrane: seconds an idle tenant is kept open"),
        ("KARTRA_MCP_MAX_TENANTS", "--auth membrane: tenants kept open at once"),
        *_LOGGING,
    ),
    "sandbox": _LOGGING,
    "tools": (*_CREDENTIALS, *_RUNNING, *_LOGGING),
    "call": (*_CREDENTIALS, *_RUNNING, *_LOGGING),
    "doctor": (*_CREDENTIALS, *_RUNNING, *_LOGGING),
    "audit": (
        ("KARTRA_MCP_AUDIT_DB", "the audit log (SQLite)"),
        ("KARTRA_MCP_AUDIT_DSN", "PostgreSQL for the audit log instead"),
        *_LOGGING,
    ),
    "connect": (*_CREDENTIALS, *_LOGGING),
}


def environment_help(command: str) -> str:
    named = ENVIRONMENT[command]
    width = max(len(name) for name, _ in named)
    return "environment variables:\n" + "\n".join(f"  {name:<{width}}  {what}" for name, what in named)
