"""What the model sees as a tool, and how risky it is, independent of MCP."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

Schema = dict[str, Any]
ToolKind = Literal["action", "proxy", "confirm", "search", "run", "check", "app"]


class Risk(StrEnum):
    """How much a call can hurt, lowest first.

    - read: changes nothing.
    - write: adds or overwrites; undoable.
    - destructive: removes something; a person can put it back by hand.
    - critical: moves money, ends a subscription, removes paid access; cannot be undone.
    """

    READ = "read"
    WRITE = "write"
    DESTRUCTIVE = "destructive"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Risk).index(self)

    @classmethod
    def highest(cls, risks: list[Risk]) -> Risk:
        return max(risks, key=lambda r: r.rank) if risks else cls.READ


@dataclass(frozen=True)
class Annotations:
    """MCP's four behaviour hints, always all set, so hosts can auto-approve reads and gate the rest."""

    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool = True

    @classmethod
    def for_risk(cls, risk: Risk, *, idempotent: bool = False) -> Annotations:
        return cls(
            read_only=risk is Risk.READ,
            destructive=risk in (Risk.DESTRUCTIVE, Risk.CRITICAL),
            idempotent=risk is Risk.READ or idempotent,
        )


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, description and schemas, its risk, and what it runs."""

    name: str
    title: str
    description: str
    input_schema: Schema
    risk: Risk
    kind: ToolKind = "action"
    output_schema: Schema | None = None
    action_id: str | None = None
    action_key: str | None = None
    # the single argument a non-object action input was wrapped in, if any
    wrapped: str | None = None
    idempotent: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # What vouches for a class below critical (the built-in table, a read type, the policy); None when
    # the tool is critical only because nothing does.
    vouched_by: str | None = field(default=None, compare=False)

    @property
    def annotations(self) -> Annotations:
        return Annotations.for_risk(self.risk, idempotent=self.idempotent)
