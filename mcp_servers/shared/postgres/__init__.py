"""shared/postgres."""
