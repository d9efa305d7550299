"""shared/observability."""
