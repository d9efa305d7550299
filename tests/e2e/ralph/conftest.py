"""Ralph's end-to-end tests reuse the integration fixtures (settings with real agent programs)."""

from tests.integration.ralph.ralph_support import programs, ralph_settings, workspace_root

__all__ = ["programs", "ralph_settings", "workspace_root"]
