"""The HTTP boundary to Membrane: credentials, the client, and the shapes of its answers."""

from kartra_mcp.membrane.auth import (
    BearerToken,
    RequestToken,
    WorkspaceCredentials,
    auth_from_settings,
    person_token,
)
from kartra_mcp.membrane.client import MembraneClient
from kartra_mcp.membrane.models import Action, ActionRun, Connection, ConnectionRequest, Integration, ProxyResponse
from kartra_mcp.membrane.retry import NO_RETRY, RetryPolicy

__all__ = [
    "NO_RETRY",
    "Action",
    "ActionRun",
    "BearerToken",
    "Connection",
    "ConnectionRequest",
    "Integration",
    "MembraneClient",
    "ProxyResponse",
    "RequestToken",
    "RetryPolicy",
    "WorkspaceCredentials",
    "auth_from_settings",
    "person_token",
]
