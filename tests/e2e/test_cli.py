"""`mcp-stack keys` and `dashboard-user`: keys and accounts from the command line, printing only their answer."""

import json
import re
import stat
import subprocess

import pytest

from mcp_servers.dashboard.auth import Passwords
from mcp_servers.dashboard.store import DashboardStore
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.e2e.test_transports import stack_env
from tests.support import VENV_BIN

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def run_cli(
    settings: StackSettings, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "mcp-stack"), *args],
        env=stack_env(settings) | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        check=False,
    )


async def test_keys_create_list_revoke(stack_settings: StackSettings) -> None:
    created = run_cli(stack_settings, "keys", "create", "--name", "ci-bot", "--scopes", "read,aidb:write")
    assert created.returncode == 0, created.stderr
    token = re.search(r"^token:\s+(\S+)$", created.stdout, re.MULTILINE)
    key_id = re.search(r"^key id:\s+(\S+)$", created.stdout, re.MULTILINE)
    assert token and key_id
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        verified = await KeyStore(database).verify(token.group(1))
        stored_hash = await database.fetchval("SELECT key_hash FROM api_keys WHERE id = $1", key_id.group(1))
    assert verified is not None and verified.scopes == ("read", "aidb:write")
    assert token.group(1).split("_")[2].encode() not in bytes(stored_hash)  # only a digest is stored

    listed = run_cli(stack_settings, "keys", "list")
    assert f"{key_id.group(1)}  active" in listed.stdout
    assert token.group(1) not in listed.stdout

    revoked = run_cli(stack_settings, "keys", "revoke", key_id.group(1))
    assert revoked.returncode == 0
    assert f"{key_id.group(1)}  revoked" in run_cli(stack_settings, "keys", "list").stdout
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        assert await KeyStore(database).verify(token.group(1)) is None


async def test_bad_scope_and_unknown_key_are_one_line_errors(stack_settings: StackSettings) -> None:
    bad_scope = run_cli(stack_settings, "keys", "create", "--name", "x", "--scopes", "root")
    unknown = run_cli(stack_settings, "keys", "revoke", "nosuchkey")
    for result in (bad_scope, unknown):
        assert result.returncode == 1
        assert result.stderr.startswith("mcp-stack: ")
        assert "Traceback" not in result.stderr


async def test_keys_create_with_its_own_rate_stores_it_and_lists_it(stack_settings: StackSettings) -> None:
    created = run_cli(
        stack_settings, "keys", "create", "--name", "bulk-loader", "--calls-per-minute", "6000", "--burst", "200"
    )
    assert created.returncode == 0, created.stderr
    assert re.search(r"^rate:\s+6000/min, burst 200$", created.stdout, re.MULTILINE)
    token = re.search(r"^token:\s+(\S+)$", created.stdout, re.MULTILINE)
    assert token
    default = run_cli(stack_settings, "keys", "create", "--name", "plain")
    assert re.search(r"^rate:\s+server default$", default.stdout, re.MULTILINE)
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        verified = await KeyStore(database).verify(token.group(1))
    assert verified is not None
    assert (verified.calls_per_minute, verified.burst) == (6000.0, 200)

    listed = run_cli(stack_settings, "keys", "list").stdout.splitlines()
    assert any(line.endswith("bulk-loader") and "6000/min, burst 200" in line for line in listed)
    assert any(line.endswith("plain") and "server default" in line for line in listed)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--calls-per-minute", "0"], "calls_per_minute"),
        (["--calls-per-minute", "nan", "--burst", "10"], "calls_per_minute"),
        (["--burst", "100001"], "burst"),
    ],
)
async def test_a_key_rate_out_of_bounds_is_a_one_line_error_and_creates_no_key(
    stack_settings: StackSettings, flags: list[str], field: str
) -> None:
    result = run_cli(stack_settings, "keys", "create", "--name", "too-fast", *flags)
    assert result.returncode == 1
    assert result.stderr.startswith(f"mcp-stack: key rate {field}: ")
    assert "Traceback" not in result.stderr
    assert "too-fast" not in run_cli(stack_settings, "keys", "list").stdout


async def test_commands_print_only_their_answer_and_log_to_a_private_file(stack_settings: StackSettings) -> None:
    info = {"MCP_STACK_OBSERVABILITY__LOG_LEVEL": "INFO"}
    created = run_cli(stack_settings, "keys", "create", "--name", "quiet", "--scopes", "read", env=info)
    listed = run_cli(stack_settings, "keys", "list", env=info)
    assert created.returncode == 0 and listed.returncode == 0
    assert created.stderr == "" and listed.stderr == ""
    assert created.stdout.splitlines()[0].startswith("key id: ")
    assert all(not line.startswith("{") for line in created.stdout.splitlines() + listed.stdout.splitlines())
    log_file = stack_settings.data_dir / "logs" / "cli.jsonl"
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_file.parent.stat().st_mode) == 0o700
    assert all(json.loads(line)["level"] for line in log_file.read_text(encoding="utf-8").splitlines())


async def test_reset_password_replaces_the_hash_and_ends_sessions(stack_settings: StackSettings) -> None:
    created = run_cli(
        stack_settings, "dashboard-user", "create", "--username", "ops", "--password-stdin", stdin="first-pass\n"
    )
    assert created.returncode == 0, created.stderr
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        await DashboardStore(database).create_session("sid-1", "ops", "csrf", 3600)
    generated = run_cli(stack_settings, "dashboard-user", "reset-password", "--username", "ops", "--generate")
    assert generated.returncode == 0, generated.stderr
    password = re.fullmatch(r"new password for ops: (\S+)\n", generated.stdout)
    assert password is not None
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        store = DashboardStore(database)
        user = await store.user("ops")
        assert user is not None
        assert await Passwords().verify(user.password_hash, password.group(1))
        assert not await Passwords().verify(user.password_hash, "first-pass")
        assert await store.session("sid-1") is None
    from_stdin = run_cli(
        stack_settings,
        "dashboard-user",
        "reset-password",
        "--username",
        "ops",
        "--password-stdin",
        stdin="third-pass\n",
    )
    assert from_stdin.stdout == "password of ops reset\n"
    unknown = run_cli(stack_settings, "dashboard-user", "reset-password", "--username", "nobody", "--generate")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("mcp-stack: ") and len(unknown.stderr.splitlines()) == 1
