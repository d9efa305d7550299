"""Logging, metrics and tracing for every server."""

__all__: list[str] = []
