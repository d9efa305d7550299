"""ralph."""
