"""shared/middleware."""
