"""How risky an action is, failing closed.

Only three things can class an action below critical: kartra-mcp's built-in table of Kartra's
actions, a Membrane action `type` that reads by construction, or the person's policy (`[risk]`).
Words in an action's key or name never lower a class: a custom action called `get-reembolso` or
`lookup-and-reverse-sale` is critical, because nothing vouches for it. Words can only raise: an
action whose type says it reads, but whose key or name speaks of changing something (or is
spelled in letters that cannot be checked), is critical too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from kartra_mcp.tools.kartra_ops import ACTIONS
from kartra_mcp.tools.spec import Risk

# Membrane runs these as one of a data collection's read operations, whatever the action is called.
# `match-data-record` is left out: Membrane does not promise it never creates the record it matches.
READ_TYPES = frozenset({"list-data-records", "find-data-record-by-id", "search-data-record"})

# Stems that say a call changes something, looked for inside the key and name with separators
# removed (so `r_e_f_u_n_d` is `refund`); a false alarm only costs a confirmation.
_CHANGE_STEMS = (
    "refund", "reembols", "rembours", "rimbors", "erstatt", "chargeback", "cancel", "revoke", "revers", "void",
    "terminat", "deactivat", "suspend", "delete", "remove", "unsubscrib", "unassign", "unenrol", "erase", "purge",
    "wipe", "destroy", "create", "update", "modify", "insert", "upsert", "grant", "notify", "broadcast", "trigger",
    "execute",
)  # fmt: skip
# Verbs that would match inside innocent words if looked for as stems, so only whole words count.
_CHANGE_WORDS = frozenset(
    {
        "end", "stop", "kill", "pay", "charge", "add", "set", "put", "edit", "move", "save", "write", "send",
        "archive", "disable", "enable", "merge", "import", "subscribe", "assign", "apply", "mark",
    }
)  # fmt: skip
_LETTERS = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Classification:
    """An action's class, whether repeating it changes nothing more, and who vouches for a class below critical.

    `vouched_by` is None when the action is critical only because nothing vouches for a lower class.
    """

    risk: Risk
    idempotent: bool = False
    vouched_by: str | None = None


def classify(
    key: str, name: str = "", action_type: str | None = None, overrides: Mapping[str, Risk] | None = None
) -> Classification:
    """The class of one action: the person's policy, else the built-in table, else its read type, else critical."""
    if overrides and key in overrides:
        risk = overrides[key]
        return Classification(risk, risk is Risk.READ, "policy")
    known = ACTIONS.get(key)
    if known is not None:
        return Classification(known.risk, known.idempotent, "built-in table")
    if action_type in READ_TYPES and not speaks_of_change(f"{key} {name}"):
        return Classification(Risk.READ, True, f"Membrane type {action_type}")
    return Classification(Risk.CRITICAL)


def speaks_of_change(text: str) -> bool:
    """Whether words in `text` say it changes something, or it holds letters that cannot be checked."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    if not plain.isascii() or not plain.isprintable():
        return True  # look-alike letters, zero-width characters or control characters: nothing can be read
    folded = plain.casefold()
    joined = "".join(_LETTERS.findall(folded))
    return any(stem in joined for stem in _CHANGE_STEMS) or bool(set(_LETTERS.findall(folded)) & _CHANGE_WORDS)
