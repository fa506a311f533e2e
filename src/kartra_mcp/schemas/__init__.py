"""JSON Schema in and out: Membrane's action schemas made client-safe, argument checks, and the
schema of the policy file."""

from importlib.resources import files

from kartra_mcp.schemas.normalize import (
    MINIMAL_SCHEMA,
    NormalizedSchema,
    normalize_input_schema,
    normalize_output_schema,
)
from kartra_mcp.schemas.validate import argument_problems, check_arguments, checked_arguments

__all__ = [
    "MINIMAL_SCHEMA",
    "POLICY_SCHEMA_PATH",
    "NormalizedSchema",
    "argument_problems",
    "check_arguments",
    "checked_arguments",
    "normalize_input_schema",
    "normalize_output_schema",
]

POLICY_SCHEMA_PATH = files(__package__) / "policy.schema.json"
