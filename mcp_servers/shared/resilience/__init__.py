"""shared/resilience."""

__all__: list[str] = []
