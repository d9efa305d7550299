"""Task workspaces: a caller's directory must resolve (symlinks and `..` included) under a configured root."""

from collections.abc import Sequence
from pathlib import Path

import anyio

from mcp_servers.shared.errors import InvalidRequest
from mcp_servers.shared.files import make_private_dir, make_state_dir


def _resolve_under_roots(workspace: str, roots: Sequence[Path]) -> Path:
    if not roots:
        raise InvalidRequest(
            "workspaces are disabled: no workspace roots are configured (set MCP_STACK_RALPH__WORKSPACE_ROOTS)"
        )
    candidate = Path(workspace).expanduser()
    if not candidate.is_absolute():
        raise InvalidRequest(f"workspace must be an absolute path, got {workspace!r}")
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise InvalidRequest(f"workspace {workspace!r} does not exist; create the directory first") from None
    if not resolved.is_dir():
        raise InvalidRequest(f"workspace {workspace!r} is not a directory")
    for root in roots:
        try:
            resolved_root = root.expanduser().resolve(strict=False)
        except (OSError, RuntimeError):
            continue
        if resolved.is_relative_to(resolved_root):
            return resolved
    raise InvalidRequest(f"workspace {workspace!r} is outside the configured workspace roots")


async def validate_workspace(workspace: str, roots: Sequence[Path]) -> Path:
    """The resolved directory, or InvalidRequest naming what to change (disabled, missing, outside roots)."""
    return await anyio.to_thread.run_sync(_resolve_under_roots, workspace, roots)


async def default_workspace(data_dir: Path, task_id: str) -> Path:
    """A fresh private directory for a task submitted without a workspace."""
    root = data_dir / "ralph" / "workspaces"
    path = root / task_id

    def create() -> None:
        make_state_dir(root)  # agent output: private, also when an earlier version made the root 0755
        make_private_dir(path)

    await anyio.to_thread.run_sync(create)
    return path
