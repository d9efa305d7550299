"""The sandbox's command line and the settings that shape it (no process runs here)."""

from pathlib import Path
from typing import Any

import pytest

from mcp_servers.ralph.sandbox import SANDBOX_HOME, SETPRIV, Confinement, Sandbox
from mcp_servers.shared.auth.scopes import grants, parse_scope
from mcp_servers.shared.config import CommandTemplate, RalphSettings, StackSettings
from mcp_servers.shared.errors import ConfigurationError


def _built(sandbox: Sandbox, confinement: Confinement) -> tuple[list[str], dict[str, str]]:
    sandbox._system = ("--ro-bind-try", "/usr", "/usr")  # what ensure_available reads from the host
    return sandbox.command(["agent", "--go"], {"PATH": "/usr/bin", "HOME": "/root"}, confinement)


def _pairs(argv: list[str], option: str) -> list[str]:
    return [argv[index + 1] for index, arg in enumerate(argv) if arg == option]


def test_a_root_server_drops_to_the_sandbox_uid_inside_bwrap_without_network() -> None:
    sandbox = Sandbox(RalphSettings(sandbox_uid=4242, sandbox_gid=4343), euid=0)
    argv, env = _built(sandbox, Confinement(Path("/srv/ws/task")))
    separator = argv.index("--")
    assert argv[0] == "/usr/bin/bwrap" and "--die-with-parent" in argv
    assert {"--unshare-pid", "--unshare-ipc", "--unshare-net"} <= set(argv[:separator])
    assert "--unshare-user" not in argv  # a user namespace would map the sandbox uid back to root
    assert argv[separator + 1 : separator + 8] == [
        SETPRIV,
        "--reuid=4242",
        "--regid=4343",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]
    assert argv[-3:] == ["--", "agent", "--go"]
    assert _pairs(argv, "--bind") == ["/srv/ws/task"]  # the only writable path
    assert _pairs(argv, "--chdir") == ["/srv/ws/task"]
    assert (env["HOME"], env["TMPDIR"], env["PATH"]) == (SANDBOX_HOME, SANDBOX_HOME, "/usr/bin")


def test_an_unprivileged_server_uses_a_user_namespace_and_no_setpriv() -> None:
    argv, _ = _built(Sandbox(RalphSettings(), euid=1000), Confinement(Path("/w")))
    assert "--unshare-user" in argv and SETPRIV not in argv
    assert argv[argv.index("--") + 1 :] == ["agent", "--go"]


def test_network_and_extra_binds_come_from_the_template_and_settings() -> None:
    sandbox = Sandbox(RalphSettings(sandbox_ro_binds=[Path("/opt/tools")]), euid=0)
    argv, _ = _built(sandbox, Confinement(Path("/w/t"), network=True, ro_binds=(Path("/etc/agent"),)))
    assert "--unshare-net" not in argv
    assert _pairs(argv, "--ro-bind-try")[1:] == ["/opt/tools", "/etc/agent"]
    # Directories leading to a bind are made traversable (bwrap would create them 0700).
    assert _pairs(argv, "--dir") == ["/opt", "/etc", "/w"]


def test_with_the_sandbox_off_the_command_is_unchanged() -> None:
    sandbox = Sandbox(RalphSettings(sandbox="none"), euid=0)
    assert sandbox.command(["agent"], {"HOME": "/root"}, Confinement(Path("/w"))) == (["agent"], {"HOME": "/root"})


def test_templates_accept_argv_lists_and_objects() -> None:
    settings = RalphSettings.model_validate(
        {"command_templates": {"a": ["claude", "-p"], "b": {"argv": ["aider"], "network": True, "ro_binds": ["/x"]}}}
    )
    assert settings.command_templates["a"] == CommandTemplate(argv=["claude", "-p"])
    assert settings.command_templates["b"].network and settings.command_templates["b"].ro_binds == [Path("/x")]
    assert not settings.allow_task_commands and settings.sandbox == "bubblewrap"


@pytest.mark.parametrize(
    "ralph",
    [
        {"command_templates": {"a": [""]}},
        {"command_templates": {"a": []}},
        {"command_templates": {"a": {"argv": ["x"], "ro_binds": ["relative"]}}},
        {"sandbox_ro_binds": ["/"]},
        {"sandbox_ro_binds": ["/srv/stack/data/keys"]},
        {"sandbox_ro_binds": ["/srv"]},
        {"command_templates": {"a": {"argv": ["x"], "ro_binds": ["/srv/stack/data"]}}},
        {"bwrap_path": "bwrap"},
    ],
)
def test_bad_sandbox_settings_are_refused(ralph: dict[str, Any]) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        StackSettings(data_dir=Path("/srv/stack/data"), ralph=ralph)


def test_exec_is_granted_only_explicitly() -> None:
    assert parse_scope("ralph:exec") == "ralph:exec" and parse_scope("exec") == "exec"
    assert grants(["ralph:exec"], server="ralph", required="exec")
    assert grants(["exec"], server="ralph", required="exec")
    for granted in (["admin"], ["write"], ["ralph:admin"], ["aidb:exec"]):
        assert not grants(granted, server="ralph", required="exec"), granted
    assert not grants(["ralph:exec"], server="ralph", required="read")  # exec is no level either
