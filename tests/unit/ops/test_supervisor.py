"""What `mcp-stack up` hands each child: peer URLs and each link's own key under the variables the children's
settings read."""

import pytest

from mcp_servers.ops.supervisor import LINK_SCOPES, UP_ORDER, base_url, links_between, peer_environment
from mcp_servers.shared.auth.scopes import parse_scope
from mcp_servers.shared.config import load_settings

KEYS = {link: f"mcps_test_{link[0]}_{link[1]}" for link in LINK_SCOPES}


def test_each_child_gets_the_urls_and_its_own_key_per_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(http={"aidb_port": 9001, "hybrid_port": 9002, "ralph_port": 9003, "dashboard_port": 9000})
    env = peer_environment(settings, UP_ORDER, KEYS)
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
    assert loaded.aidb.peer_api_key is None
    sent = {
        ("aidb", "hybrid"): loaded.aidb.peer_api_keys["hybrid"],
        ("aidb", "ralph"): loaded.aidb.peer_api_keys["ralph"],
        ("hybrid", "aidb"): loaded.hybrid.aidb_api_key,
        ("hybrid", "ralph"): loaded.hybrid.ralph_api_key,
        ("ralph", "hybrid"): loaded.ralph.hybrid_api_key,
        ("ralph", "aidb"): loaded.ralph.aidb_api_key,
    }
    assert {link: key.get_secret_value() if key else None for link, key in sent.items()} == KEYS


def test_every_link_key_is_scoped_to_its_callee_and_none_is_stack_wide() -> None:
    assert set(LINK_SCOPES) == set(links_between(UP_ORDER))
    for (_client, target), scopes in LINK_SCOPES.items():
        assert all(parse_scope(scope) and ":" in scope for scope in scopes)
        assert f"{target}:read" in scopes or f"{target}:write" in scopes
        assert not any(scope.endswith(":admin") for scope in scopes)
    # Only the proposal link writes to Ralph, and only Ralph writes to Hybrid; nothing writes to AIDB.
    writers = {link for link, scopes in LINK_SCOPES.items() if any(scope.endswith(":write") for scope in scopes)}
    assert writers == {("hybrid", "ralph"), ("ralph", "hybrid")}


def test_a_server_not_started_is_not_offered_as_a_peer() -> None:
    settings = load_settings()
    links = links_between(("aidb", "ralph"))
    env = peer_environment(settings, ("aidb", "ralph"), {link: KEYS[link] for link in links})
    assert set(env) == {"aidb", "ralph"}
    assert "hybrid" not in env["aidb"]["MCP_STACK_AIDB__REGISTER_SERVERS"]
    assert "hybrid" not in env["aidb"]["MCP_STACK_AIDB__PEER_API_KEYS"]
    assert not any("HYBRID" in variable for variable in env["ralph"])
