"""aidb."""
