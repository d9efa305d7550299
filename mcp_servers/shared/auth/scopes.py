"""Scopes: read < write < admin, granted stack-wide ("write") or for one server ("aidb:write").

Capabilities are granted beside the levels and implied by none of them: `exec` (`ralph:exec`) lets a caller
hand Ralph programs of its own to run (verify commands, hooks). Not even admin implies it: a key that manages
the stack should not also be a way to run code on its host (docs/security.md).
"""

from collections.abc import Iterable
from typing import Literal

Scope = Literal["read", "write", "admin"]
Capability = Literal["exec"]
SCOPE_RANK: dict[str, int] = {"read": 0, "write": 1, "admin": 2}
ALL_SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
CAPABILITIES: frozenset[str] = frozenset({"exec"})


def parse_scope(value: str) -> str:
    """Validate one granted scope: `read|write|admin|exec` or `<server>:read|write|admin|exec`."""
    level = value.rsplit(":", 1)[-1]
    server = value[: -len(level) - 1] if ":" in value else None
    if (level not in SCOPE_RANK and level not in CAPABILITIES) or (server is not None and not server.isidentifier()):
        raise ValueError(f"unknown scope {value!r}: use read, write, admin, exec or <server>:<level>")
    return value


def grants(granted: Iterable[str], *, server: str, required: Scope | Capability) -> bool:
    """Whether the granted scopes satisfy `required` on `server` (a higher level implies the lower ones; a
    capability is satisfied only by itself)."""
    if required in CAPABILITIES:
        return any(scope in (required, f"{server}:{required}") for scope in granted)
    needed = SCOPE_RANK[required]
    for scope in granted:
        level = scope.rsplit(":", 1)[-1]
        target = scope[: -len(level) - 1] if ":" in scope else server
        if target == server and SCOPE_RANK.get(level, -1) >= needed:
            return True
    return False
