"""Ralph's sandbox, attacked for real: agent templates, hooks and verify commands try to escape and must fail.

A real `mcp-stack serve ralph` process (root here) runs a probe program as an agent template, as a hook and as a
verify command. The probe tries to write outside its workspace (data dir, the host's /tmp), read the data dir and
the server's key file, read the server's /proc environ, signal the server, list other workspaces and connect to a
listener on the host's loopback; each attempt must fail, the server must keep running, and the probe must run as
the unprivileged sandbox uid. Caller-supplied commands need `ralph:exec`; a stopped server leaves no agent behind.
"""

import contextlib
import json
import os
import socket
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from mcp_servers.ralph.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED
from tests.e2e.hardening.processes import served
from tests.e2e.test_transports import issue_key
from tests.integration.ralph.ralph_support import PYTHON, PYTHON_PREFIX, call, read_iterations, wait_for_status
from tests.support import http_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

SANDBOX_UID = 65534

# Tries every escape named in targets.json; prints and saves (in its workspace) a report: name -> outcome.
PROBE = """
    import json, os, signal, socket, sys

    mode = sys.argv[1]
    targets = json.load(open(os.path.join(os.path.dirname(__file__), "targets.json"), encoding="utf-8"))
    report = {"uid": os.getuid(), "gid": os.getgid(), "home": os.environ.get("HOME")}

    def attempt(name, action):
        try:
            report[name] = "ESCAPED: " + repr(action())[:200]
        except Exception as exc:
            report[name] = f"blocked: {type(exc).__name__}"

    def write(path):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("escaped")
        return path

    def connect(port):
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            return "connected"

    attempt("write_data_dir", lambda: write(os.path.join(targets["data_dir"], f"pwned-{mode}")))
    attempt("read_data_dir", lambda: open(targets["data_file"], encoding="utf-8").read())
    attempt("read_key_file", lambda: open(targets["key_file"], encoding="utf-8").read())
    attempt("read_server_environ", lambda: open(f"/proc/{targets['server_pid']}/environ", "rb").read())
    attempt("signal_server", lambda: os.kill(targets["server_pid"], signal.SIGTERM))
    attempt("list_other_workspace", lambda: os.listdir(targets["other_workspace"]))
    attempt("read_shadow", lambda: open("/etc/shadow", encoding="utf-8").read())
    attempt("connect_loopback", lambda: connect(targets["port"]))
    # Writing /tmp works inside (a private tmpfs); the test checks the host's /tmp never sees the file.
    report["write_tmp"] = write(f"/tmp/{targets['tmp_marker']}-{mode}")
    report["workspace_listing"] = sorted(os.listdir(os.path.dirname(os.getcwd())))
    with open(f"report-{mode}.json", "w", encoding="utf-8") as handle:
        json.dump(report, handle)
    print(json.dumps(report))
    print("<promise>PROBED</promise>")
"""

ESCAPES = (
    "write_data_dir",
    "read_data_dir",
    "read_key_file",
    "read_server_environ",
    "signal_server",
    "list_other_workspace",
    "read_shadow",
    "connect_loopback",
)


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    """A TCP listener on the host's loopback: reachable from a sandbox only when its network is on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


class Host:
    """The files an escape would reach: a data dir with a secret, a key file, another task's workspace."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.programs = root / "programs"
        self.workspaces = root / "workspaces"
        self.key_file = root / "secrets" / "hybrid.key"
        self.other = self.workspaces / "other"
        for directory in (self.data_dir, self.programs, self.workspaces, self.key_file.parent, self.other):
            directory.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "secret.txt").write_text("data dir secret", encoding="utf-8")
        self.key_file.write_text("mcps_key_secret", encoding="utf-8")
        self.key_file.chmod(0o600)
        (self.other / "theirs.txt").write_text("another task's file", encoding="utf-8")
        (self.programs / "probe.py").write_text(textwrap.dedent(PROBE), encoding="utf-8")
        self.tmp_marker = f"ralph-sandbox-probe-{os.getpid()}-{id(self)}"

    def probe(self, mode: str) -> list[str]:
        return [PYTHON, str(self.programs / "probe.py"), mode]

    def env(self, **ralph: Any) -> dict[str, str]:
        section: dict[str, Any] = {
            "workers": 2,
            "control_poll_seconds": 0.1,
            "workspace_roots": [str(self.workspaces)],
            "allow_task_commands": True,
            "sandbox_ro_binds": [PYTHON_PREFIX, str(self.programs)],
            "command_templates": {
                "probe": self.probe("agent"),
                "probe_net": {"argv": self.probe("agent_net"), "network": True},
                "sleep41": ["sleep", "41"],
            },
            "backoff_base_seconds": 0.0,
            "backoff_max_seconds": 0.0,
            **ralph,
        }
        env = {f"MCP_STACK_RALPH__{key.upper()}": json.dumps(value) for key, value in section.items()}
        return env | {
            "MCP_STACK_DATA_DIR": str(self.data_dir),
            "MCP_STACK_RATE_LIMIT__ENABLED": "false",
            "MCP_STACK_RALPH__HYBRID_API_KEY_FILE": str(self.key_file),
        }

    def write_targets(self, server_pid: int, port: int) -> None:
        targets = {
            "data_dir": str(self.data_dir),
            "data_file": str(self.data_dir / "secret.txt"),
            "key_file": str(self.key_file),
            "server_pid": server_pid,
            "other_workspace": str(self.other),
            "port": port,
            "tmp_marker": self.tmp_marker,
        }
        (self.programs / "targets.json").write_text(json.dumps(targets), encoding="utf-8")

    def workspace(self, name: str) -> Path:
        path = self.workspaces / name
        path.mkdir()
        return path


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


async def test_agent_hook_and_verify_command_cannot_escape_the_sandbox(
    module_settings: StackSettings, host: Host, listener: int, tmp_path: Path
) -> None:
    token = await issue_key(module_settings, ["write", "ralph:exec"])
    async with served("ralph", module_settings, tmp_path / "logs", host.env()) as proc:
        host.write_targets(proc.process.pid, listener)
        workspace = host.workspace("probe")
        async with http_client(proc.url, token) as client:
            submitted = await call(
                client,
                "submit_task",
                prompt="probe",
                backend="command:probe",
                max_iterations=1,
                workspace=str(workspace),
                hooks=[{"event": "pre_iteration", "command": " ".join(host.probe("hook"))}],
                verify_command=" ".join(host.probe("verify")),
            )
            task = await wait_for_status(client, submitted["task_id"], timeout=60)
            iterations = await read_iterations(client, submitted["task_id"])
        assert proc.process.poll() is None  # the server survived the kill attempts
    assert (task["status"], task["completion_reason"]) == ("completed", "verify_passed")
    assert iterations[0]["status"] == "ok", iterations[0]
    for mode in ("agent", "hook", "verify"):
        report = json.loads((workspace / f"report-{mode}.json").read_text(encoding="utf-8"))
        assert (report["uid"], report["gid"]) == (SANDBOX_UID, SANDBOX_UID), report
        assert report["home"] == "/tmp", report
        for escape in ESCAPES:
            assert report[escape].startswith("blocked"), (mode, escape, report[escape])
        assert report["workspace_listing"] == ["probe"], report  # no other workspace is even named
        assert not (Path("/tmp") / f"{host.tmp_marker}-{mode}").exists()
        assert not (host.data_dir / f"pwned-{mode}").exists()
    assert (host.other / "theirs.txt").read_text(encoding="utf-8") == "another task's file"


async def test_a_template_with_network_on_reaches_the_host_loopback(
    module_settings: StackSettings, host: Host, listener: int, tmp_path: Path
) -> None:
    token = await issue_key(module_settings, ["write"])
    async with served("ralph", module_settings, tmp_path / "logs", host.env()) as proc:
        host.write_targets(proc.process.pid, listener)
        workspace = host.workspace("net")
        async with http_client(proc.url, token) as client:
            submitted = await call(
                client,
                "submit_task",
                prompt="probe",
                backend="command:probe_net",
                completion_promise="PROBED",
                max_iterations=1,
                workspace=str(workspace),
            )
            task = await wait_for_status(client, submitted["task_id"], timeout=60)
    report = json.loads((workspace / "report-agent_net.json").read_text(encoding="utf-8"))
    assert (task["status"], task["completion_reason"]) == ("completed", "promise_found")
    assert report["connect_loopback"] == "ESCAPED: 'connected'"
    # The network is the only thing the template opened.
    assert all(report[escape].startswith("blocked") for escape in ESCAPES if escape != "connect_loopback"), report


async def test_caller_supplied_commands_need_the_exec_scope_which_write_and_admin_lack(
    module_settings: StackSettings, host: Host, tmp_path: Path
) -> None:
    write_key = await issue_key(module_settings, ["write"])
    admin_key = await issue_key(module_settings, ["admin"])
    async with served("ralph", module_settings, tmp_path / "logs", host.env()) as proc:
        for token in (write_key, admin_key):
            async with http_client(proc.url, token) as client:
                for extra in (
                    {"verify_command": "true"},
                    {"hooks": [{"event": "pre_iteration", "command": "true"}]},
                ):
                    with pytest.raises(MCPError) as refused:
                        await client.call_tool(
                            "submit_task", {"prompt": "p", "backend": "command:probe", "max_iterations": 1, **extra}
                        )
                    assert refused.value.error.code == PERMISSION_DENIED
                    assert refused.value.error.data == {"required_scope": "ralph:exec"}
                # Picking an operator template by name is what write is for.
                await call(client, "submit_task", prompt="p", backend="command:probe", require_approval=True)


def _sleep41_pids() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes() == b"sleep\x0041\x00":
                pids.add(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return pids


async def test_sigterm_to_the_server_leaves_no_agent_process_behind(
    module_settings: StackSettings, host: Host, tmp_path: Path
) -> None:
    token = await issue_key(module_settings, ["write"])
    before = _sleep41_pids()
    async with served("ralph", module_settings, tmp_path / "logs", host.env()) as proc:
        async with http_client(proc.url, token) as client:
            await call(client, "submit_task", prompt="sleep", backend="command:sleep41", max_iterations=1)
        with anyio.fail_after(30):
            while not _sleep41_pids() - before:
                await anyio.sleep(0.05)
        await proc.stop()  # SIGTERM, and wait for the process to exit
        assert proc.process.returncode is not None
        with anyio.fail_after(10):
            while _sleep41_pids() - before:
                await anyio.sleep(0.05)


async def test_sigkill_to_the_server_leaves_no_agent_process_behind(
    module_settings: StackSettings, host: Host, tmp_path: Path
) -> None:
    token = await issue_key(module_settings, ["write"])
    before = _sleep41_pids()
    async with served("ralph", module_settings, tmp_path / "logs", host.env()) as proc:
        async with http_client(proc.url, token) as client:
            await call(client, "submit_task", prompt="sleep", backend="command:sleep41", max_iterations=1)
        with anyio.fail_after(30):
            while not _sleep41_pids() - before:
                await anyio.sleep(0.05)
        await proc.kill9()  # no shutdown code runs: bwrap's --die-with-parent does the work
        with anyio.fail_after(10):
            while _sleep41_pids() - before:
                await anyio.sleep(0.05)


# In-process (the trusted local parent): the operator's switches decide.


def _in_process(module_settings: StackSettings, host: Host, **ralph: Any) -> Client:
    section = {
        key.removeprefix("MCP_STACK_RALPH__").lower(): json.loads(value)
        for key, value in host.env().items()
        if key.startswith("MCP_STACK_RALPH__") and not key.endswith("_FILE")
    }
    settings = StackSettings(
        data_dir=host.data_dir,
        postgres=module_settings.postgres.model_dump(),
        rate_limit={"enabled": False},
        ralph={**section, **ralph},
    )
    return Client(create_server(build_core("ralph", settings)).mcp)


async def test_with_task_commands_off_a_verify_command_is_refused_naming_the_setting(
    module_settings: StackSettings, host: Host
) -> None:
    async with _in_process(module_settings, host, allow_task_commands=False, workers=0) as client:
        result = await client.call_tool(
            "submit_task", {"prompt": "p", "backend": "command:probe", "verify_command": "true"}
        )
    assert result.is_error
    assert "MCP_STACK_RALPH__ALLOW_TASK_COMMANDS" in str(result.content)


async def test_without_bubblewrap_command_tasks_are_refused_unless_the_operator_opts_out(
    module_settings: StackSettings, host: Host, listener: int, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-bwrap")
    async with _in_process(module_settings, host, bwrap_path=missing, workers=0) as client:
        for extra in ({}, {"verify_command": "true"}, {"hooks": [{"event": "on_complete", "command": "true"}]}):
            arguments = {"prompt": "p", "backend": "command:probe", **extra}
            result = await client.call_tool("submit_task", arguments)
            assert result.is_error, arguments
            text = str(result.content)
            assert "bubblewrap" in text and "MCP_STACK_RALPH__SANDBOX=none" in text, text
    # Unconfined, the probe's kill attempt would succeed: aim it at a stand-in, not at this test process.
    stand_in = await anyio.open_process(["sleep", "600"])
    host.write_targets(stand_in.pid, listener)
    workspace = host.workspace("unconfined")
    try:
        async with _in_process(module_settings, host, bwrap_path=missing, sandbox="none") as client:
            submitted = await call(
                client,
                "submit_task",
                prompt="p",
                backend="command:probe",
                completion_promise="PROBED",
                max_iterations=1,
                workspace=str(workspace),
            )
            task = await wait_for_status(client, submitted["task_id"], timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the probe's SIGTERM may have ended it already
            stand_in.kill()
        await stand_in.wait()
    report = json.loads((workspace / "report-agent.json").read_text(encoding="utf-8"))
    assert (task["status"], task["completion_reason"]) == ("completed", "promise_found")
    assert report["uid"] == os.getuid()  # unconfined: the operator chose it, and it shows
    assert report["read_data_dir"].startswith("ESCAPED")
    (Path("/tmp") / f"{host.tmp_marker}-agent").unlink()
