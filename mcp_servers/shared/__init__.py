"""shared."""

__all__: list[str] = []
