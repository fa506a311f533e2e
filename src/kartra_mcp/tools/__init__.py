"""What the model sees, independent of MCP: tool specs, the catalog, risk, policy, confirmations,
previews, the proxy tool, the audit log, and the call pipeline that ties them together."""

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
