"""Only shared/peers.py is an MCP client: no other module imports the SDK's client side, however spelled."""

import ast
from pathlib import Path

import pytest

from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.peers import PeerSpec, ToolAnswer, mcp_endpoint, open_peer

PACKAGE = Path(__file__).resolve().parents[3] / "mcp_servers"
PEERS = PACKAGE / "shared" / "peers.py"
# Names the top-level `mcp` package re-exports from `mcp.client` (import-linter sees only `mcp` for these).
CLIENT_NAMES = {"Client", "ClientSession", "ClientSessionGroup", "StdioServerParameters", "stdio_client"}


def client_imports(tree: ast.AST) -> list[str]:
    """Each import in the tree that reaches the MCP client, as text."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            if node.module == "mcp.client" or node.module.startswith("mcp.client."):
                found.append(f"from {node.module} import ...")
            elif node.module == "mcp":
                found += [f"from mcp import {alias.name}" for alias in node.names if alias.name in CLIENT_NAMES]
                found += ["from mcp import client" for alias in node.names if alias.name == "client"]
        elif isinstance(node, ast.Import):
            found += [
                f"import {alias.name}"
                for alias in node.names
                if alias.name == "mcp.client" or alias.name.startswith("mcp.client.")
            ]
    return found


def test_only_the_peers_module_imports_the_mcp_client() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PEERS and (found := client_imports(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert offenders == {}
    assert client_imports(ast.parse(PEERS.read_text(encoding="utf-8")))  # the check sees what peers.py does


@pytest.mark.parametrize(
    "source",
    [
        "from mcp import Client",
        "from mcp import StdioServerParameters as Params",
        "from mcp.client.streamable_http import streamable_http_client",
        "import mcp.client.stdio",
        "from mcp import client",
    ],
)
def test_every_spelling_of_a_client_import_is_caught(source: str) -> None:
    assert client_imports(ast.parse(source))


def test_server_side_imports_are_not_client_imports() -> None:
    assert not client_imports(ast.parse("from mcp import MCPError\nfrom mcp.server.mcpserver import MCPServer"))


def test_a_configured_url_gets_its_mcp_path_once() -> None:
    assert mcp_endpoint("http://127.0.0.1:8801") == "http://127.0.0.1:8801/mcp"
    assert mcp_endpoint("http://127.0.0.1:8801/mcp/") == "http://127.0.0.1:8801/mcp"


def test_an_answer_without_structured_content_falls_back_to_its_json_text_then_its_text() -> None:
    assert ToolAnswer({"a": 1}, "ignored").data() == {"a": 1}
    assert ToolAnswer(None, '{"b": 2}').data() == {"b": 2}
    assert ToolAnswer(None, "[1, 2]").data() == {"result": [1, 2]}
    assert ToolAnswer(None, "plain").data() == {"text": "plain"}


@pytest.mark.anyio
async def test_a_peer_url_that_is_not_http_is_refused_before_any_client_is_built() -> None:
    with pytest.raises(ConfigurationError):
        async with open_peer(PeerSpec("aidb", "file:///etc/passwd", None, 5), None):
            pass
