"""Which backends this deployment offers, built once from settings (the composition root of backends)."""

from collections.abc import Mapping

from mcp_servers.ralph.backends.command import CommandBackend, template_name
from mcp_servers.ralph.backends.port import Backend
from mcp_servers.ralph.sandbox import Sandbox
from mcp_servers.shared.config import RalphSettings
from mcp_servers.shared.errors import InvalidRequest


class BackendRegistry:
    """Backend name -> backend; names are `hybrid`, `command` and `command:NAME`."""

    def __init__(self, backends: Mapping[str, Backend]) -> None:
        self._backends = dict(backends)

    def names(self) -> list[str]:
        return sorted(self._backends)

    def get(self, name: str) -> Backend:
        """The backend, or InvalidRequest naming the configured ones."""
        backend = self._backends.get(name)
        if backend is None:
            offered = ", ".join(self.names()) or "none"
            hint = ""
            if name == "hybrid":
                hint = " (set MCP_STACK_RALPH__HYBRID_URL)"
            elif template_name(name) is not None:
                hint = " (add it to MCP_STACK_RALPH__COMMAND_TEMPLATES)"
            raise InvalidRequest(f"unknown backend {name!r}{hint}; this server offers: {offered}")
        return backend


def command_backends(settings: RalphSettings, sandbox: Sandbox) -> dict[str, Backend]:
    """`command` for the template named "default", `command:NAME` for every template."""
    templates = settings.command_templates
    backends: dict[str, Backend] = {}
    for name, template in templates.items():
        backends[f"command:{name}"] = CommandBackend(f"command:{name}", template, settings, sandbox)
        if name == "default":
            backends["command"] = CommandBackend("command", template, settings, sandbox)
    return backends
