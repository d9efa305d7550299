"""Every request method an MCP server of the stack dispatches has a scope rule (a later one without fails here)."""

from pathlib import Path

import pytest
from mcp_types import methods

from mcp_servers.cli import SERVERS, build_server
from mcp_servers.shared.config import load_settings
from mcp_servers.shared.middleware.mcp import HANDSHAKE_METHODS, METHOD_SCOPES, TOOL_CALL

MCP_SERVERS = [name for name in SERVERS if name != "dashboard"]
RULED = set(METHOD_SCOPES) | HANDSHAKE_METHODS | {TOOL_CALL}


@pytest.mark.parametrize("name", MCP_SERVERS)
def test_every_method_the_server_dispatches_has_a_scope_rule(name: str, tmp_path: Path) -> None:
    server = build_server(name, load_settings(data_dir=tmp_path))
    # The SDK keeps its handler table private and offers only a lookup by name; `initialize` is the runner's own.
    dispatched = set(server.mcp._lowlevel_server._request_handlers) | {"initialize"}
    assert "resources/read" in dispatched and "prompts/get" in dispatched
    assert dispatched <= RULED, sorted(dispatched - RULED)


def test_every_client_request_method_of_the_specification_has_a_scope_rule() -> None:
    assert set(methods.SPEC_CLIENT_METHODS) <= RULED, sorted(set(methods.SPEC_CLIENT_METHODS) - RULED)


def test_only_the_handshake_is_open_to_any_authenticated_caller() -> None:
    assert sorted(HANDSHAKE_METHODS) == ["initialize", "ping", "server/discover"]
    assert not HANDSHAKE_METHODS & set(METHOD_SCOPES)
    # Only the tasks extension's state-changing methods need more than read (answering or cancelling a task).
    writes = {method for method, scope in METHOD_SCOPES.items() if scope != "read"}
    assert writes == {"tasks/update", "tasks/cancel"}
    assert {METHOD_SCOPES[method] for method in writes} == {"write"}
