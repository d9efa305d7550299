"""Domain errors map to MCP in one place: ToolError for what the model can act on, MCPError for the host."""

from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from mcp_servers.shared.errors import ConfigurationError, PeerToolError, RateLimited
from mcp_servers.shared.middleware.mcp import RATE_LIMITED, to_mcp_error


def test_a_peer_tool_error_reaches_the_model_with_the_peers_text() -> None:
    mapped = to_mcp_error(PeerToolError("aidb", "search", "query too long; shorten it"))
    assert isinstance(mapped, ToolError)
    assert str(mapped) == "aidb search: query too long; shorten it"


def test_a_configuration_error_is_a_protocol_error_not_a_tool_error() -> None:
    mapped = to_mcp_error(ConfigurationError("embedder returns 384 dimensions, settings say 768"))
    assert isinstance(mapped, MCPError)
    assert mapped.error.code == INTERNAL_ERROR


def test_a_rate_limit_keeps_its_wait_for_the_host() -> None:
    mapped = to_mcp_error(RateLimited(retry_after_seconds=2.5, limit_key="k"))
    assert isinstance(mapped, MCPError)
    assert mapped.error.code == RATE_LIMITED
    assert mapped.error.data == {"retry_after_seconds": 2.5}


def test_a_wait_below_a_millisecond_is_never_reported_as_zero() -> None:
    # A fast key's emission interval: 1,000,000 calls a minute refill one call in 60 microseconds.
    for wait, reported in [(0.00006, 0.001), (1e-12, 0.001), (0.0015, 0.002), (2.0001, 2.001), (3.0, 3.0)]:
        mapped = to_mcp_error(RateLimited(retry_after_seconds=wait, limit_key="k"))
        assert isinstance(mapped, MCPError)
        assert mapped.error.data == {"retry_after_seconds": reported}
        assert "retry in 0" not in mapped.error.message and "0.00" not in mapped.error.message
