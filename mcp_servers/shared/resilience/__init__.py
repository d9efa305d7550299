"""shared/resilience."""
