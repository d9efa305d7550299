"""shared/vectors."""

__all__: list[str] = []
