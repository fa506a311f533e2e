"""The policy: per risk class and per action, allow, confirm or deny; read-only mode; the kill
switch; caps; and what to do when the client cannot ask the person.

Loaded from a TOML file checked against `schemas/policy.schema.json`; an invalid file stops the
server at start, naming the file, the key and what was expected. `decide` is a pure function of
the policy and the call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kartra_mcp.errors import PolicyError
from kartra_mcp.schemas import POLICY_SCHEMA_PATH
from kartra_mcp.tools.kartra_ops import ACTIONS
from kartra_mcp.tools.spec import Risk

if TYPE_CHECKING:  # imported when a policy file is read: the defaults need no schema
    from jsonschema.exceptions import ValidationError

Mode = Literal["allow", "confirm", "deny"]
_ORDER: dict[Mode, int] = {"allow": 0, "confirm": 1, "deny": 2}
DEFAULT_CLASSES: dict[Risk, Mode] = {
    Risk.READ: "allow",
    Risk.WRITE: "allow",
    Risk.DESTRUCTIVE: "confirm",
    Risk.CRITICAL: "confirm",
}
# Built-in tools that are not Kartra calls: an entry can hide and refuse them ("deny"), or leave them
# be ("allow"); "confirm" would mean nothing, so it is an error rather than silence.
_PLAIN_BUILTINS = ("confirm-action", "search-actions", "run-action")


@dataclass(frozen=True)
class Target:
    """Something a call would do: the action (or Kartra command's action) and its risk."""

    action: str | None
    risk: Risk


@dataclass(frozen=True)
class Decision:
    mode: Mode
    reason: str = ""


@dataclass(frozen=True)
class Policy:
    classes: Mapping[Risk, Mode] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    actions: Mapping[str, Mode] = field(default_factory=dict)
    # The person's own classes for actions, by action key (the `[risk]` table).
    risk: Mapping[str, Risk] = field(default_factory=dict)
    read_only: bool = False
    kill_switch: bool = False
    on_unconfirmable: Literal["token", "refuse"] = "refuse"
    confirmation_ttl: int = 300
    max_refund_amount: float | None = None
    max_critical_calls_per_hour: int | None = None
    source: str = "built-in defaults"

    def decide(self, tool: str, targets: Iterable[Target]) -> Decision:
        """allow, confirm or deny a call, with the reason for a denial."""
        targets = list(targets) or [Target(None, Risk.CRITICAL)]
        writes = [t for t in targets if t.risk is not Risk.READ]
        if writes and self.kill_switch:
            return Decision(
                "deny",
                "The kill switch is on: only reads are allowed. A person turns it off in the "
                f"policy ({self.source}) or KARTRA_MCP_KILL_SWITCH.",
            )
        if writes and self.read_only:
            return Decision(
                "deny",
                f"Read-only mode is on ({self.source}, KARTRA_MCP_READ_ONLY or --read-only): "
                f"{tool} would change the Kartra account, so it is refused.",
            )
        mode: Mode = self.actions.get(tool, "allow")
        reason = f"The policy ({self.source}) denies {tool}." if mode == "deny" else ""
        for target in targets:
            wanted = self.actions.get(target.action or "", self.classes.get(target.risk, "confirm"))
            if _ORDER[wanted] > _ORDER[mode]:
                mode = wanted
                name = target.action or "this call"
                explicit = (target.action or "") in self.actions
                reason = (
                    f"The policy ({self.source}) denies {name}."
                    if explicit
                    else f"The policy ({self.source}) denies {target.risk.value} calls ({name})."
                )
        return Decision(mode, reason if mode == "deny" else "")

    def visible(self, tool: str, risk: Risk, action: str | None = None) -> bool:
        """Whether a tool is listed: read-only mode, the kill switch and denials hide it."""
        return self.decide(tool, [Target(action, risk)]).mode != "deny"

    def unknown_actions(self, known: Iterable[str]) -> list[str]:
        """Action entries that name no tool or action: most likely a typo that silently does nothing."""
        names = set(known)
        return sorted({key for key in (*self.actions, *self.risk) if key not in names})

    def with_overrides(self, *, read_only: bool = False, kill_switch: bool = False) -> Policy:
        """Settings and flags can only make the policy stricter."""
        return replace(self, read_only=self.read_only or read_only, kill_switch=self.kill_switch or kill_switch)


def load_policy(path: Path | None) -> Policy:
    """The policy in a TOML file, or the defaults when no file is named."""
    if path is None:
        return Policy()
    import tomllib  # only a policy file needs it

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(str(path), "(file)", "the file does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(str(path), "(syntax)", f"valid TOML ({exc})") from None
    return policy_from_mapping(data, source=str(path))


def policy_from_mapping(data: Mapping[str, Any], *, source: str) -> Policy:
    from jsonschema import Draft202012Validator

    schema = json.loads(POLICY_SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise PolicyError(source, _key(errors[0]), _expected(errors[0]))
    limits = data.get("limits", {})
    actions: dict[str, Mode] = dict(data.get("actions", {}))
    for name in _PLAIN_BUILTINS:
        if actions.get(name) == "confirm":
            raise PolicyError(
                source,
                f"actions.{name}",
                f'"deny" (hide and refuse {name}) or "allow"; "confirm" means nothing for a tool that is not a '
                "Kartra call (a call run through it follows the entry of its own action)",
            )
    risks = {key: Risk(value) for key, value in data.get("risk", {}).items()}
    for key, risk in risks.items():
        known = ACTIONS.get(key)
        if known is not None and risk.rank < known.risk.rank:
            raise PolicyError(
                source,
                f"risk.{key}",
                f'"{known.risk.value}" or higher: kartra-mcp knows {key} as {known.risk.value}, and [risk] may '
                "raise a known class, never lower it (use [actions] to change what happens to it)",
            )
    # With confirm-action denied, a confirmation id could never be redeemed: refuse instead of issuing one.
    token = actions.get("confirm-action") != "deny" and data.get("on_unconfirmable", "refuse") == "token"
    return Policy(
        classes={**DEFAULT_CLASSES, **{Risk(k): v for k, v in data.get("classes", {}).items()}},
        actions=actions,
        risk=risks,
        read_only=data.get("read_only", False),
        kill_switch=data.get("kill_switch", False),
        on_unconfirmable="token" if token else "refuse",
        confirmation_ttl=data.get("confirmation_ttl_seconds", 300),
        max_refund_amount=limits.get("max_refund_amount"),
        max_critical_calls_per_hour=limits.get("max_critical_calls_per_hour"),
        source=source,
    )


def _key(error: ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set((error.schema.get("properties") or {}).keys()) if isinstance(error.schema, Mapping) else set()
        unknown = sorted(k for k in error.instance if k not in allowed)
        return ".".join(filter(None, [path, unknown[0] if unknown else ""])) or "(top level)"
    return path or "(top level)"


def _expected(error: ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    wanted: Any = error.validator_value
    if isinstance(schema.get("enum"), list):  # a wrong type for an enum: list the choices, not the type
        choices = ", ".join(json.dumps(v) for v in schema["enum"])
        return f"one of {choices}; got {json.dumps(error.instance, default=str)}"
    if error.validator == "additionalProperties":
        known = sorted((schema.get("properties") or {}).keys())
        return f"unknown key; expected one of: {', '.join(known)}" if known else "unknown key"
    if error.validator == "enum":
        return f"one of {', '.join(json.dumps(v) for v in wanted)}; got {json.dumps(error.instance)}"
    if error.validator == "type":
        return f"a {error.validator_value}; got {json.dumps(error.instance, default=str)}"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum"):
        return f"{error.validator} {error.validator_value}; got {error.instance}"
    return error.message
