"""A small in-process cache with a TTL whose entries also die when the knowledge base's generation moves on.

Every write that can change a search result bumps a generation counter in PostgreSQL (in the write's own
transaction), so a cached entry is served only while nothing changed, in this process or any other replica.
"""

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    generation: int
    expires_at: float


class GenerationCache(Generic[V]):
    """LRU of at most `max_entries`, each valid for `ttl_seconds` and only at the generation it was stored at.

    A TTL of 0 disables caching. Not thread-safe: use it from the event loop only.
    """

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[bool], None] | None = None,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._on_result = on_result
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """False when the TTL is 0."""
        return self._ttl > 0

    def get(self, key: Hashable, generation: int) -> V | None:
        """The cached value for `key` if fresh and stored at `generation`; counts a hit or a miss."""
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        fresh = entry is not None and entry.generation == generation and entry.expires_at > self._clock()
        if entry is not None and not fresh:
            del self._entries[key]
        if fresh:
            assert entry is not None
            self._entries.move_to_end(key)
        self._count(fresh)
        return entry.value if fresh and entry is not None else None

    def put(self, key: Hashable, generation: int, value: V) -> None:
        """Store `value` as computed at `generation`; evicts the least recently used beyond the size."""
        if not self.enabled:
            return
        self._entries[key] = _Entry(value, generation, self._clock() + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        if self._on_result is not None:
            self._on_result(hit)


class LruCache(Generic[V]):
    """A plain bounded LRU (for values that never go stale, like a query's embedding)."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        """The value, refreshed as most recently used, or None."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V) -> None:
        """Store a value, evicting the least recently used beyond the size."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
