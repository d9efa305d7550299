"""The generation cache: TTL, generation invalidation, LRU bound, hit/miss counts."""

from mcp_servers.aidb.cache import GenerationCache, LruCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hit_within_ttl_at_the_same_generation() -> None:
    cache: GenerationCache[str] = GenerationCache(10, 100, clock=FakeClock())
    cache.put("k", 1, "v")
    assert cache.get("k", 1) == "v"
    assert (cache.hits, cache.misses) == (1, 0)


def test_a_new_generation_invalidates() -> None:
    cache: GenerationCache[str] = GenerationCache(10, 100, clock=FakeClock())
    cache.put("k", 1, "v")
    assert cache.get("k", 2) is None
    assert cache.get("k", 1) is None  # evicted, not resurrected
    assert cache.misses == 2


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache: GenerationCache[str] = GenerationCache(10, 100, clock=clock)
    cache.put("k", 1, "v")
    clock.now = 9.9
    assert cache.get("k", 1) == "v"
    clock.now = 10.0
    assert cache.get("k", 1) is None


def test_zero_ttl_disables_caching() -> None:
    cache: GenerationCache[str] = GenerationCache(0, 100)
    cache.put("k", 1, "v")
    assert cache.get("k", 1) is None
    assert len(cache) == 0


def test_size_is_bounded_least_recently_used_first() -> None:
    events: list[bool] = []
    cache: GenerationCache[int] = GenerationCache(10, 2, clock=FakeClock(), on_result=events.append)
    cache.put("a", 1, 1)
    cache.put("b", 1, 2)
    assert cache.get("a", 1) == 1
    cache.put("c", 1, 3)
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) == 1
    assert events == [True, False, True]


def test_lru_cache_bounds_and_refreshes() -> None:
    cache: LruCache[int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1
