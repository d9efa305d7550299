"""shared/auth."""
