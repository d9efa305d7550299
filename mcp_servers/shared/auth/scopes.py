"""Scopes: read < write < admin, granted stack-wide ("write") or for one server ("aidb:write")."""

from collections.abc import Iterable
from typing import Literal

Scope = Literal["read", "write", "admin"]
SCOPE_RANK: dict[str, int] = {"read": 0, "write": 1, "admin": 2}
ALL_SCOPES: tuple[Scope, ...] = ("read", "write", "admin")


def parse_scope(value: str) -> str:
    """Validate one granted scope: `read|write|admin` or `<server>:read|write|admin`."""
    level = value.rsplit(":", 1)[-1]
    server = value[: -len(level) - 1] if ":" in value else None
    if level not in SCOPE_RANK or (server is not None and not server.isidentifier()):
        raise ValueError(f"unknown scope {value!r}: use read, write, admin or <server>:<level>")
    return value


def grants(granted: Iterable[str], *, server: str, required: Scope) -> bool:
    """Whether the granted scopes satisfy `required` on `server` (a higher level implies the lower ones)."""
    needed = SCOPE_RANK[required]
    for scope in granted:
        level = scope.rsplit(":", 1)[-1]
        target = scope[: -len(level) - 1] if ":" in scope else server
        if target == server and SCOPE_RANK.get(level, -1) >= needed:
            return True
    return False
