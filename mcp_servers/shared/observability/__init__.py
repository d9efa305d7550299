"""Logging, metrics and tracing for every server."""
