"""shared/middleware."""

__all__: list[str] = []
