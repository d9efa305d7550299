"""The API-key verdict cache: keyed by digest, expiring, and bounded in entries and in bytes (LRU)."""

import hashlib

from mcp.server.auth.provider import AccessToken

from mcp_servers.shared.auth.verifier import VerdictCache


def digest(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def test_entries_expire() -> None:
    cache = VerdictCache()
    cache.put(digest(1), 10.0, "invalid")
    assert cache.get(digest(1), 9.9) == "invalid"
    assert cache.get(digest(1), 10.0) is None
    assert len(cache) == 0 and cache.size_bytes == 0


def test_the_least_recently_used_entry_goes_first_at_the_entry_bound() -> None:
    cache = VerdictCache(max_entries=3)
    for n in range(3):
        cache.put(digest(n), 100.0, "invalid")
    assert cache.get(digest(0), 0.0) == "invalid"  # now the most recently used
    cache.put(digest(3), 100.0, "revoked")
    assert len(cache) == 3
    assert cache.get(digest(1), 0.0) is None
    assert cache.get(digest(0), 0.0) == "invalid"


def test_a_flood_of_refusals_stays_within_the_byte_bound() -> None:
    cache = VerdictCache(max_entries=1_000_000, max_bytes=64 * 1024)
    accepted = AccessToken(token="mcps_" + "a" * 56, client_id="k", scopes=["read"])
    cache.put(digest(-1), 100.0, accepted)
    for n in range(10_000):
        cache.put(digest(n), 100.0, "invalid")
    assert cache.size_bytes <= 64 * 1024
    assert 0 < len(cache) < 10_000
    assert cache.get(digest(9_999), 0.0) == "invalid"
