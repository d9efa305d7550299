"""shared/vectors."""
