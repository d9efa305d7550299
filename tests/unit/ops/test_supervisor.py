"""What `mcp-stack up` hands each child: peer URLs and keys under the variables the children's settings read."""

import pytest

from mcp_servers.ops.supervisor import UP_ORDER, base_url, peer_environment
from mcp_servers.shared.config import load_settings

KEY = "mcps_test_peer"


def test_each_child_gets_the_urls_and_key_of_the_peers_it_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(http={"aidb_port": 9001, "hybrid_port": 9002, "ralph_port": 9003, "dashboard_port": 9000})
    env = peer_environment(settings, UP_ORDER, KEY)
    assert env["dashboard"] == {}
    for name in ("aidb", "hybrid", "ralph"):
        for variable, value in env[name].items():
            monkeypatch.setenv(variable, value)
    loaded = load_settings()
    assert loaded.aidb.register_servers == {
        "hybrid": f"{base_url(settings, 'hybrid')}/mcp",
        "ralph": f"{base_url(settings, 'ralph')}/mcp",
    }
    assert loaded.hybrid.aidb_url == "http://127.0.0.1:9001/mcp"
    assert loaded.hybrid.ralph_url == "http://127.0.0.1:9003/mcp"
    assert loaded.ralph.hybrid_url == "http://127.0.0.1:9002/mcp"
    assert loaded.ralph.aidb_url == "http://127.0.0.1:9001/mcp"
    for secret in (loaded.aidb.peer_api_key, loaded.hybrid.aidb_api_key, loaded.ralph.hybrid_api_key):
        assert secret is not None and secret.get_secret_value() == KEY


def test_a_server_not_started_is_not_offered_as_a_peer() -> None:
    settings = load_settings()
    env = peer_environment(settings, ("aidb", "ralph"), KEY)
    assert set(env) == {"aidb", "ralph"}
    assert "hybrid" not in env["aidb"]["MCP_STACK_AIDB__REGISTER_SERVERS"]
    assert not any("HYBRID" in variable for variable in env["ralph"])
