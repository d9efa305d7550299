"""Host allow-lists match literally: names exactly, addresses by network, never through DNS."""

import pytest

from mcp_servers.shared.config import load_settings
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.hosts import LOOPBACK_HOSTS, HostAllowList, check_host_entry

LOOPBACK = HostAllowList(LOOPBACK_HOSTS, "aidb.allowed_peer_hosts")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_hosts_are_admitted_by_default(host: str) -> None:
    assert LOOPBACK.admits(host)


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "10.0.0.1",
        "192.168.1.1",
        "0.0.0.0",
        "2130706433",
        "0x7f.1",
        "localhost.",
        "localhost.evil.example",
        "metadata.google.internal",
        "fe80::1",
    ],
)
def test_other_hosts_are_refused_whatever_they_resolve_to(host: str) -> None:
    assert not LOOPBACK.admits(host)


def test_listed_networks_and_names_are_admitted() -> None:
    listed = HostAllowList(("10.1.0.0/16", "mcp.internal"), "x")
    assert listed.admits("10.1.2.3") and listed.admits("MCP.internal")
    assert not listed.admits("10.2.0.1") and not listed.admits("a.mcp.internal")


@pytest.mark.parametrize("entry", ["", "http://host", "a b", "host:80", "*.internal", "ünï.com"])
def test_an_entry_that_is_neither_a_network_nor_a_hostname_is_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        check_host_entry(entry)


def test_aidb_peer_settings_are_checked_at_load() -> None:
    with pytest.raises(ConfigurationError):
        load_settings(aidb={"allowed_peer_hosts": ["http://10.0.0.1"]})
    with pytest.raises(ConfigurationError):
        load_settings(aidb={"peer_api_keys": {"hybrid": "mcps_x"}})
    with pytest.raises(ConfigurationError):
        load_settings(aidb={"register_servers": {"calc": "'unterminated"}})
    loaded = load_settings(
        aidb={"register_servers": {"hybrid": "http://127.0.0.1:8802/mcp"}, "peer_api_keys": {"hybrid": "mcps_x"}}
    )
    assert loaded.aidb.peer_api_keys["hybrid"].get_secret_value() == "mcps_x"
