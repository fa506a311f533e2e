"""kartra-mcp: operate a Kartra account from an AI assistant through Membrane, with guardrails."""

__version__ = "0.1.0"
