"""What the model sees, independent of MCP: tool specs, the catalog, risk, policy, confirmations,
previews, the proxy tool, the audit log, and the call pipeline that ties them together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kartra_mcp._lazy import lazy_exports

if TYPE_CHECKING:
    from kartra_mcp.tools.audit import AuditLog
    from kartra_mcp.tools.call import (
        Accepted,
        CallResult,
        ConfirmationRequest,
        Confirmer,
        Declined,
        Deferred,
        NoConfirmer,
        Pending,
        Unavailable,
    )
    from kartra_mcp.tools.catalog import Catalog
    from kartra_mcp.tools.confirm import ConfirmationBook
    from kartra_mcp.tools.executor import Executor
    from kartra_mcp.tools.policy import Policy, load_policy
    from kartra_mcp.tools.spec import Annotations, Risk, ToolSpec

__all__ = [
    "Accepted",
    "Annotations",
    "AuditLog",
    "CallResult",
    "Catalog",
    "ConfirmationBook",
    "ConfirmationRequest",
    "Confirmer",
    "Declined",
    "Deferred",
    "Executor",
    "NoConfirmer",
    "Pending",
    "Policy",
    "Risk",
    "ToolSpec",
    "Unavailable",
    "load_policy",
]

# `kartra-mcp audit` reads the audit log without loading the call pipeline and its HTTP client.
__getattr__ = lazy_exports(
    __name__,
    {
        "AuditLog": "kartra_mcp.tools.audit",
        "Catalog": "kartra_mcp.tools.catalog",
        "ConfirmationBook": "kartra_mcp.tools.confirm",
        "Accepted": "kartra_mcp.tools.call",
        "CallResult": "kartra_mcp.tools.call",
        "ConfirmationRequest": "kartra_mcp.tools.call",
        "Confirmer": "kartra_mcp.tools.call",
        "Declined": "kartra_mcp.tools.call",
        "Deferred": "kartra_mcp.tools.call",
        "Executor": "kartra_mcp.tools.executor",
        "NoConfirmer": "kartra_mcp.tools.call",
        "Pending": "kartra_mcp.tools.call",
        "Unavailable": "kartra_mcp.tools.call",
        "Policy": "kartra_mcp.tools.policy",
        "load_policy": "kartra_mcp.tools.policy",
        "Annotations": "kartra_mcp.tools.spec",
        "Risk": "kartra_mcp.tools.spec",
        "ToolSpec": "kartra_mcp.tools.spec",
    },
)
