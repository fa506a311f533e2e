"""The README's examples are what the code accepts: a person who copies one gets a working file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from kartra_mcp.tools.policy import policy_from_mapping

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_toml_block_in_the_readme_is_a_policy_the_server_accepts() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    assert blocks, "the README shows no policy file"
    for block in blocks:
        policy = policy_from_mapping(tomllib.loads(block), source="README.md")
        assert policy.on_unconfirmable in {"refuse", "token"}
