"""Which backends this deployment offers, built once from settings (the composition root of backends)."""

from collections.abc import Callable, Mapping

from mcp_servers.ralph.backends.command import CommandBackend, template_name
from mcp_servers.ralph.backends.port import Backend
from mcp_servers.shared.config import RalphSettings
from mcp_servers.shared.errors import InvalidRequest


class BackendRegistry:
    """Backend name -> backend; names are `hybrid`, `command` and `command:NAME`.

    With `live`, the command backends follow the command templates in force (a live settings change is seen by
    the next lookup, no restart); the others are fixed.
    """

    def __init__(self, backends: Mapping[str, Backend], *, live: Callable[[], RalphSettings] | None = None) -> None:
        self._backends = dict(backends)
        self._live = live
        self._templates: Mapping[str, object] | None = None
        self._commands: dict[str, Backend] = {}

    def _current(self) -> dict[str, Backend]:
        if self._live is None:
            return self._backends
        settings = self._live()
        if settings.command_templates != self._templates:
            self._commands = command_backends(settings)
            self._templates = settings.command_templates
        return {**self._backends, **self._commands}

    def names(self) -> list[str]:
        return sorted(self._current())

    def get(self, name: str) -> Backend:
        """The backend, or InvalidRequest naming the configured ones."""
        backend = self._current().get(name)
        if backend is None:
            offered = ", ".join(self.names()) or "none"
            hint = ""
            if name == "hybrid":
                hint = " (set MCP_STACK_RALPH__HYBRID_URL)"
            elif template_name(name) is not None:
                hint = " (add it to MCP_STACK_RALPH__COMMAND_TEMPLATES)"
            raise InvalidRequest(f"unknown backend {name!r}{hint}; this server offers: {offered}")
        return backend


def command_backends(settings: RalphSettings) -> dict[str, Backend]:
    """`command` for the template named "default", `command:NAME` for every template."""
    templates = settings.command_templates
    backends: dict[str, Backend] = {}
    for name, argv in templates.items():
        backends[f"command:{name}"] = CommandBackend(f"command:{name}", argv, settings)
        if name == "default":
            backends["command"] = CommandBackend("command", argv, settings)
    return backends
