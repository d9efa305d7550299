"""Scopes: levels imply the lower ones; per-server grants apply to that server only."""

import pytest

from mcp_servers.shared.auth.keys import split_token
from mcp_servers.shared.auth.scopes import grants, parse_scope


@pytest.mark.parametrize(
    ("granted", "required", "expected"),
    [
        (["read"], "read", True),
        (["read"], "write", False),
        (["write"], "read", True),
        (["admin"], "write", True),
        (["aidb:write"], "write", True),
        (["hybrid:admin"], "read", False),
        ([], "read", False),
    ],
)
def test_grants_on_aidb(granted: list[str], required: str, expected: bool) -> None:
    assert grants(granted, server="aidb", required=required) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", ["root", "aidb:owner", "a b:read", ""])
def test_unknown_scope_is_refused(scope: str) -> None:
    with pytest.raises(ValueError):
        parse_scope(scope)


def test_token_parts_are_parsed_strictly() -> None:
    assert split_token("mcps_abc_def") == ("abc", "def")
    assert split_token("mcps_abc") is None
    assert split_token("bearer_abc_def") is None
    assert split_token("mcps__def") is None
