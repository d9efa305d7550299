"""Ralph's fixtures (defined in ralph_support, shared with the e2e tests)."""

from tests.integration.ralph.ralph_support import programs, ralph_settings, workspace_root

__all__ = ["programs", "ralph_settings", "workspace_root"]
