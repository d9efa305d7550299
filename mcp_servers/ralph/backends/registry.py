"""Which backends this deployment offers, built once from settings (the composition root of backends)."""

from collections.abc import Callable, Mapping

from mcp_servers.ralph.backends.command import CommandBackend, template_name
from mcp_servers.ralph.backends.port import Backend
from mcp_servers.ralph.sandbox import Sandbox
from mcp_servers.shared.config import RalphSettings
from mcp_servers.shared.errors import InvalidRequest


class BackendRegistry:
    """Backend name -> backend; names are `hybrid`, `command` and `command:NAME`.

    With `live`, the command backends follow the command templates in force (a live settings change is seen by
    the next lookup, no restart); the others are fixed.
    """

    def __init__(
        self,
        backends: Mapping[str, Backend],
        *,
        sandbox: Sandbox | None = None,
        live: Callable[[], RalphSettings] | None = None,
    ) -> None:
        if live is not None and sandbox is None:
            raise ValueError("live command templates need the sandbox their commands run in")
        self._backends = dict(backends)
        self._sandbox = sandbox
        self._live = live
        self._templates: Mapping[str, object] | None = None
        self._commands: dict[str, Backend] = {}

    def _current(self) -> dict[str, Backend]:
        if self._live is None:
            return self._backends
        settings = self._live()
        if settings.command_templates != self._templates:
            assert self._sandbox is not None  # checked in __init__
            self._commands = command_backends(settings, self._sandbox)
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


def command_backends(settings: RalphSettings, sandbox: Sandbox) -> dict[str, Backend]:
    """`command` for the template named "default", `command:NAME` for every template."""
    templates = settings.command_templates
    backends: dict[str, Backend] = {}
    for name, template in templates.items():
        backends[f"command:{name}"] = CommandBackend(f"command:{name}", template, settings, sandbox)
        if name == "default":
            backends["command"] = CommandBackend("command", template, settings, sandbox)
    return backends
