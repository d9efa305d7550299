"""Issue 12's attacks replayed against the stack as `make run` starts it: `mcp-stack up`, as root, on its embedded
defaults (a fresh HOME: the embedded PostgreSQL, the data dir under it), with keys of every scope made by the real
`mcp-stack keys create`. Each attack must fail.

Replayed here: per-server scopes on every request method in both eras (3), per-principal limits on resource reads,
prompt gets and sessions (6), refused credentials counted on /metrics (9), a `write` key trying to make Ralph run
a command (1), a light flood of unique 100 KB tokens (5; the full run is test_token_flood), and attacks of our own
(admin tools with a read key, undeclared arguments, another principal's MCP task, the bridge key file, the bearer
routes and the dashboard without credentials). docs/security.md maps every issue-12 attack to its test.
"""

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from anyio import to_thread
from mcp import Client, MCPError
from mcp_types import (
    INVALID_PARAMS,
    EmptyResult,
    PromptReference,
    ResourceTemplateReference,
    SubscribeRequest,
    SubscribeRequestParams,
)

from mcp_servers.ops.stack_file import STACK_FILE
from mcp_servers.ops.supervisor import UP_ORDER
from mcp_servers.shared.auth.verifier import MAX_TOKEN_CHARS
from mcp_servers.shared.embeddings.provision import DEFAULT_MODEL_DIR
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED, RATE_LIMITED
from mcp_servers.shared.postgres.embedded import cluster_dir
from tests.e2e.hardening.test_local_users import _probe_as_nobody
from tests.e2e.hardening.test_token_flood import BODY, HEADERS, HTTP_LAYER_REFUSALS, MAX_GROWTH_BYTES, resident_bytes
from tests.integration.ralph.ralph_support import call
from tests.integration.ralph.test_mcp_tasks import RpcError, wire
from tests.integration.test_auth_limits import INITIALIZE, MCP_HEADERS
from tests.integration.test_method_scopes import NOT_SERVED, outcome
from tests.support import VENV_BIN, free_port, http_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

START_SECONDS = 120
STOP_SECONDS = 60
ERAS = ["legacy", "2026-07-28"]
MCP_SERVERS = ("aidb", "hybrid", "ralph")
ADMIN_KEY = re.compile(r"^\s+(mcps_[0-9a-f]+_\S+)$", re.MULTILINE)
DASHBOARD_LOGIN = re.compile(r"^Dashboard login \(shown once\): (\S+) / (\S+)$", re.MULTILINE)
# The last lines `up` prints, once the bridge key's stack file is written.
FOOTER = "Features that are off"
CLI_TOKEN = re.compile(r"^token:\s+(\S+)$", re.MULTILINE)
# Keys made with `mcp-stack keys create`: name -> (scopes, extra options).
KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "read": ("read", ()),
    "write": ("write", ()),
    "admin": ("admin", ()),
    "aidb:read": ("aidb:read", ()),
    "aidb:write": ("aidb:write", ()),
    "hybrid:read": ("hybrid:read", ()),
    "ralph:read": ("ralph:read", ()),
    # Everything a caller-chosen command needs but the operator's switch (hybrid tasks need aidb:read too).
    "ralph:exec": ("ralph:write,ralph:exec,aidb:read", ()),
    # Three calls at once, one a minute after: the per-method limits show within a test.
    "slow": ("aidb:read", ("--calls-per-minute", "1", "--burst", "3")),
    # Never rate-limited, and used by no other test: what stops it opening sessions is the cap alone.
    "sessions": ("aidb:read", ("--calls-per-minute", "1000000", "--burst", "1000")),
}
FLOOD_REQUESTS = 300
FLOOD_CONNECTIONS = 4
DEFAULT_SESSION_CAP = 100  # http.max_sessions_per_principal's default


@dataclass(frozen=True)
class Stack:
    home: Path
    data_dir: Path
    pid: int
    urls: dict[str, str]
    keys: dict[str, str]
    dashboard_login: tuple[str, str]

    def serve_pid(self, name: str) -> int:
        """The pid of `up`'s `serve NAME` child (Linux /proc)."""
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                parent = int((entry / "stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if parent == self.pid and b"serve" in argv and argv[argv.index(b"serve") + 1] == name.encode():
                    return int(entry.name)
        raise AssertionError(f"no `serve {name}` child of {self.pid}")


def _up_environment(home: Path, ports: dict[str, int]) -> dict[str, str]:
    """`make run`'s environment: this one without MCP_STACK_* (so embedded defaults), with a fresh HOME."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    env |= {f"MCP_STACK_HTTP__{name.upper()}_PORT": str(port) for name, port in ports.items()}
    return env | {
        "HOME": str(home),
        # The provisioned model, which a fresh HOME would otherwise look for under itself.
        "MCP_STACK_EMBEDDER__MODEL_DIR": str(DEFAULT_MODEL_DIR),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }


async def _create_key(env: dict[str, str], name: str, scopes: str, options: tuple[str, ...]) -> str:
    command = [str(VENV_BIN / "mcp-stack"), "keys", "create", "--name", name, "--scopes", scopes, *options]
    result = await anyio.run_process(command, env=env, check=True)
    token = CLI_TOKEN.search(result.stdout.decode())
    assert token is not None, result.stdout
    return token[1]


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    """`mcp-stack up` as `make run` starts it, for the whole module; then every key scope from the CLI."""
    assert os.getuid() == 0, "this machine runs the suite as root, as the attacks assume"
    base = Path(await to_thread.run_sync(functools.partial(tempfile.mkdtemp, prefix="mcpstack-attacks-")))
    home = base / "home"
    data_dir = home / ".local" / "share" / "mcp-stack"  # the default under HOME
    await to_thread.run_sync(os.chmod, base, 0o755)
    await to_thread.run_sync(home.mkdir, 0o700)
    ports = {name: free_port() for name in UP_ORDER}
    env = _up_environment(home, ports)
    output = base / "up.out"
    try:
        with output.open("wb") as sink:
            process = await anyio.open_process(
                [str(VENV_BIN / "mcp-stack"), "up"], env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
            )
        try:
            banner = ""
            with anyio.fail_after(START_SECONDS):
                while FOOTER not in banner:
                    assert process.returncode is None, banner
                    await anyio.sleep(0.1)
                    banner = await anyio.Path(output).read_text(encoding="utf-8", errors="replace")
            admin, login = ADMIN_KEY.search(banner), DASHBOARD_LOGIN.search(banner)
            assert admin is not None and login is not None, banner
            keys = {"up admin": admin[1]}

            async def create(name: str, scopes: str, options: tuple[str, ...]) -> None:
                keys[name] = await _create_key(env, name, scopes, options)

            async with anyio.create_task_group() as tg:
                for name, (scopes, options) in KEYS.items():
                    tg.start_soon(create, name, scopes, options)
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            yield Stack(home, data_dir, process.pid, urls, keys, (login[1], login[2]))
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                    with anyio.move_on_after(STOP_SECONDS):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(shutil.rmtree, cluster_dir(data_dir), True)
            await to_thread.run_sync(shutil.rmtree, base, True)


async def test_up_started_as_make_run_does_and_the_cli_made_every_key(stack: Stack) -> None:
    assert set(stack.keys) == {"up admin", *KEYS}
    assert len(set(stack.keys.values())) == len(stack.keys)
    async with httpx.AsyncClient(timeout=10) as raw:
        for name in UP_ORDER:
            assert (await raw.get(f"{stack.urls[name]}/health")).status_code == 200


@dataclass(frozen=True)
class Seeded:
    document_id: str
    task_id: str


@pytest.fixture(scope="module")
async def seeded(stack: Stack) -> Seeded:
    """A document in AIDB and a Ralph task parked for approval (never run), for the reads to aim at."""
    async with http_client(stack.urls["aidb"], stack.keys["up admin"]) as aidb:
        document = await call(aidb, "store_document", content="The billing office's vault code is 7319.", title="v")
    async with http_client(stack.urls["ralph"], stack.keys["write"]) as ralph:
        task = await call(ralph, "submit_task", prompt="summarise the vault", backend="hybrid", require_approval=True)
    return Seeded(str(document["document_id"]), str(task["task_id"]))


Call = Callable[[Client], Awaitable[object]]


def subscribe(uri: str) -> Call:
    """resources/subscribe as the 2025-11-25 client sends it, in either era (the 2026-07-28 client has no helper)."""

    async def attempt(client: Client) -> object:
        request = SubscribeRequest(params=SubscribeRequestParams(uri=uri))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return await client.session.send_request(request, EmptyResult)

    return attempt


def every_method(server: str, seeded: Seeded) -> dict[str, Call]:
    """One call per request method a read key may make on `server`, aimed at real content."""
    task = f"ralph://tasks/{seeded.task_id}"
    calls: dict[str, dict[str, Call]] = {
        "aidb": {
            "resources/read aidb://projects": lambda c: c.read_resource("aidb://projects"),
            "resources/read aidb://documents/{id}": lambda c: c.read_resource(f"aidb://documents/{seeded.document_id}"),
            "prompts/get": lambda c: c.get_prompt("answer_with_sources", {"question": "what is the vault code?"}),
            "completion/complete": lambda c: c.complete(
                PromptReference(name="answer_with_sources"), {"name": "question", "value": "wh"}
            ),
            "resources/subscribe": subscribe("aidb://projects"),
            "tools/call": lambda c: c.call_tool("search", {"query": "vault code"}),
        },
        "ralph": {
            "resources/read ralph://tasks/{id}": lambda c: c.read_resource(task),
            "resources/read ralph://tasks/{id}/iterations": lambda c: c.read_resource(f"{task}/iterations"),
            "completion/complete": lambda c: c.complete(
                ResourceTemplateReference(uri="ralph://tasks/{task_id}"), {"name": "task_id", "value": ""}
            ),
            "resources/subscribe": subscribe(task),
            "tools/call": lambda c: c.call_tool("task_status", {"task_id": seeded.task_id}),
        },
        "hybrid": {"tools/call": lambda c: c.call_tool("learning_stats", {})},
    }
    shared: dict[str, Call] = {
        "tools/list": lambda c: c.list_tools(),
        "resources/list": lambda c: c.list_resources(),
        "resources/templates/list": lambda c: c.list_resource_templates(),
        "prompts/list": lambda c: c.list_prompts(),
    }
    return shared | calls[server]


# Each server, a key scoped to another server (refused everything), and its own read key (served).
FOREIGN_AND_OWN = {
    "aidb": ("ralph:read", "aidb:read"),
    "ralph": ("aidb:write", "ralph:read"),
    "hybrid": ("aidb:read", "hybrid:read"),
}


@pytest.mark.parametrize("mode", ERAS)
async def test_attack_3_a_key_for_another_server_is_refused_every_method_and_the_servers_own_key_is_not(
    stack: Stack, seeded: Seeded, mode: str
) -> None:
    for server, (foreign, own) in FOREIGN_AND_OWN.items():
        calls = every_method(server, seeded)
        async with http_client(stack.urls[server], stack.keys[foreign], mode=mode) as client:
            refused = {method: await outcome(attempt, client) for method, attempt in calls.items()}
        async with http_client(stack.urls[server], stack.keys[own], mode=mode) as client:
            allowed = {method: await outcome(attempt, client) for method, attempt in calls.items()}
        assert refused == dict.fromkeys(calls, PERMISSION_DENIED), (server, refused)
        for method, code in allowed.items():
            # 2026-07-28 subscribes with subscriptions/listen; Hybrid offers tools only.
            lists = {"resources/list", "resources/templates/list", "prompts/list"}
            unserved = (method == "resources/subscribe" and mode != "legacy") or (
                server == "hybrid" and method in lists
            )
            assert code is None or (unserved and code in NOT_SERVED), (server, method, code)


async def test_attack_6_resource_reads_and_prompt_gets_are_rate_limited_per_principal_in_both_eras(
    stack: Stack,
) -> None:
    aidb = stack.urls["aidb"]
    # One key with three calls at once: each method has its own budget, spent here in one era each.
    async with http_client(aidb, stack.keys["slow"]) as legacy:
        for _ in range(3):
            await legacy.read_resource("aidb://projects")
        with pytest.raises(MCPError) as read_limited:
            await legacy.read_resource("aidb://projects")
    async with http_client(aidb, stack.keys["slow"], mode="2026-07-28") as modern:
        for _ in range(3):
            await modern.get_prompt("answer_with_sources", {"question": "what is the vault code?"})
        with pytest.raises(MCPError) as prompt_limited:
            await modern.get_prompt("answer_with_sources", {"question": "what is the vault code?"})
        with pytest.raises(MCPError) as read_still_limited:
            await modern.read_resource("aidb://projects")
    # Another principal's budgets are its own.
    async with http_client(aidb, stack.keys["aidb:read"], mode="2026-07-28") as other:
        await other.read_resource("aidb://projects")
        await other.get_prompt("answer_with_sources", {"question": "what is the vault code?"})
    for refused in (read_limited.value, prompt_limited.value, read_still_limited.value):
        assert refused.code == RATE_LIMITED
        assert refused.data["retry_after_seconds"] > 0


async def test_attack_6_one_key_cannot_hold_more_than_its_session_cap_while_another_key_gets_in(stack: Stack) -> None:
    aidb = f"{stack.urls['aidb']}/mcp"
    hog, other = stack.keys["sessions"], stack.keys["aidb:read"]
    opened: list[tuple[str, str]] = []
    async with httpx.AsyncClient(timeout=30) as raw:

        async def open_session(token: str) -> httpx.Response:
            response = await raw.post(
                aidb, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}
            )
            if response.status_code == 200:
                opened.append((token, response.headers["mcp-session-id"]))
            return response

        try:
            with anyio.fail_after(60):
                statuses = [(await open_session(hog)).status_code for _ in range(DEFAULT_SESSION_CAP)]
                refused = await open_session(hog)
                admitted = await open_session(other)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                for token, session in opened:
                    headers = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": session}
                    await raw.delete(aidb, headers=headers)
    assert statuses == [200] * DEFAULT_SESSION_CAP
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == RATE_LIMITED and error["data"]["retry_after_seconds"] > 0
    assert f"already holds {DEFAULT_SESSION_CAP} open sessions" in error["message"]
    assert admitted.status_code == 200


def auth_failures(metrics: str, server: str) -> dict[str, float]:
    pattern = rf'^mcpstack_auth_failures_total{{reason="(\w+)",server="{server}"}} ([0-9.]+)$'
    return {match[1]: float(match[2]) for match in re.finditer(pattern, metrics, re.MULTILINE)}


async def counted_refusals(raw: httpx.AsyncClient, stack: Stack, server: str, foreign: str) -> dict[str, float]:
    """Knock on `server` without a key, with a wrong one, an overlong one and `foreign` (another server's key): every
    knock is refused; returns how much each reason's counter on its /metrics grew."""
    url, reader = stack.urls[server], {"Authorization": f"Bearer {stack.keys['read']}"}

    def bearer(token: str) -> dict[str, str]:
        return {**MCP_HEADERS, "Authorization": f"Bearer {token}"}

    before = auth_failures((await raw.get(f"{url}/metrics", headers=reader)).text, server)
    refusals = [
        await raw.get(f"{url}/ready"),
        await raw.get(f"{url}/metrics"),
        await raw.post(f"{url}/mcp", json=BODY, headers=MCP_HEADERS),
        await raw.post(f"{url}/mcp", json=BODY, headers=bearer("mcps_000000000000_" + "x" * 43)),
        await raw.post(f"{url}/mcp", json=BODY, headers=bearer("mcps_" + "a" * 12 + "_" + "b" * MAX_TOKEN_CHARS)),
    ]
    for response in refusals:
        assert response.status_code == 401, (server, response.request.url)
        assert response.headers["www-authenticate"].startswith("Bearer")
    async with http_client(url, stack.keys[foreign]) as client:
        assert await outcome(lambda c: c.list_tools(), client) == PERMISSION_DENIED
    metrics = await raw.get(f"{url}/metrics", headers=reader)
    assert metrics.status_code == 200
    after = auth_failures(metrics.text, server)
    return {reason: grown for reason, count in after.items() if (grown := count - before.get(reason, 0.0))}


async def test_attack_9_every_refused_credential_is_counted_by_reason_and_no_bearer_route_is_open(
    stack: Stack,
) -> None:
    foreign = {"aidb": "ralph:read", "hybrid": "aidb:read", "ralph": "hybrid:read"}
    async with httpx.AsyncClient(timeout=30) as raw:
        counted = {server: await counted_refusals(raw, stack, server, key) for server, key in foreign.items()}
        # The dashboard: no session, no page.
        page = await raw.get(f"{stack.urls['dashboard']}/")
    expected = {"missing": 3, "invalid": 1, "too_long": 1, "insufficient_scope": 1}
    assert counted == dict.fromkeys(foreign, expected)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_attack_1_no_key_makes_ralph_run_a_command_of_its_choosing(stack: Stack, tmp_path: Path) -> None:
    await to_thread.run_sync(os.chmod, tmp_path, 0o777)  # so that even the sandbox uid could leave the marker
    marker = tmp_path / "owned"
    command = f"sh -c 'id > {marker}'"
    attempts = ({"verify_command": command}, {"hooks": [{"event": "pre_iteration", "command": command}]})
    refusals = []
    for key in ("write", "admin", "up admin", "ralph:exec"):
        async with http_client(stack.urls["ralph"], stack.keys[key]) as ralph:
            before = await call(ralph, "list_tasks")
            for extra in attempts:
                task = {"prompt": "p", "backend": "hybrid", "max_iterations": 1, **extra}
                refusals.append(await ralph.call_tool("submit_task", task))
            assert await call(ralph, "list_tasks") == before
    # `up` leaves the operator's switch off: even ralph:exec is refused, naming the setting to change.
    for refused in refusals:
        assert refused.is_error
        assert "MCP_STACK_RALPH__ALLOW_TASK_COMMANDS" in refused.content[0].text  # type: ignore[union-attr]
    assert not await anyio.Path(marker).exists()


async def test_attack_5_unique_100_kb_tokens_are_refused_and_leave_resident_memory_bounded(stack: Stack) -> None:
    url = stack.urls["hybrid"]
    pid = stack.serve_pid("hybrid")
    reader = {"Authorization": f"Bearer {stack.keys['read']}"}
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=FLOOD_CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        for _ in range(10):  # warm the allocators on ordinary authenticated traffic
            assert (await client.get("/metrics", headers=reader)).status_code == 200
        before_rss = await to_thread.run_sync(resident_bytes, pid)
        before = auth_failures((await client.get("/metrics", headers=reader)).text, "hybrid").get("too_long", 0.0)

        async def flood(count: int) -> None:
            for _ in range(count):
                secret = secrets.token_urlsafe(100 * 1024).replace("_", "-")[: 100 * 1024]
                headers = {**HEADERS, "Authorization": f"Bearer mcps_{secrets.token_hex(6)}_{secret}"}
                try:
                    statuses.append((await client.post("/mcp", json=BODY, headers=headers)).status_code)
                except httpx.TransportError:
                    statuses.append(0)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(FLOOD_CONNECTIONS):
                    tg.start_soon(flood, FLOOD_REQUESTS // FLOOD_CONNECTIONS)
        after_rss = await to_thread.run_sync(resident_bytes, pid)
        after = auth_failures((await client.get("/metrics", headers=reader)).text, "hybrid")["too_long"]
    assert set(statuses) <= {401, *HTTP_LAYER_REFUSALS}, set(statuses)
    assert statuses.count(401) >= FLOOD_REQUESTS * 0.9
    assert after - before == statuses.count(401)
    assert after_rss - before_rss <= MAX_GROWTH_BYTES, (before_rss, after_rss)


# Attacks of our own.


async def test_aidb_read_and_write_keys_cannot_call_its_admin_tools(stack: Stack) -> None:
    attempts = {
        "reindex": {},
        "register_mcp_server": {"name": "evil", "url": "http://169.254.169.254/mcp"},
    }
    codes = {}
    for key in ("aidb:read", "aidb:write", "write"):
        async with http_client(stack.urls["aidb"], stack.keys[key]) as aidb:
            for tool, arguments in attempts.items():
                codes[key, tool] = await outcome(lambda c, t=tool, a=arguments: c.call_tool(t, a), aidb)
    assert set(codes.values()) == {PERMISSION_DENIED}


async def test_an_argument_a_tool_does_not_declare_is_invalid_params_in_both_eras(stack: Stack) -> None:
    for mode in ERAS:
        async with http_client(stack.urls["aidb"], stack.keys["read"], mode=mode) as aidb:
            with pytest.raises(MCPError) as smuggled:
                await aidb.call_tool("search", {"query": "vault", "as_admin": True})
        assert smuggled.value.error.code == INVALID_PARAMS


async def test_another_principals_ralph_task_is_unknown_to_the_tasks_extension(stack: Stack) -> None:
    url = stack.urls["ralph"]
    async with wire(url, stack.keys["write"]) as owner:
        created = await owner.submit(prompt="summarise the vault", backend="hybrid", require_approval=True)
        task_id = created["taskId"]
        assert (await owner.get(task_id))["taskId"] == task_id
    async with wire(url, stack.keys["ralph:exec"]) as stranger:
        with pytest.raises(RpcError) as read:
            await stranger.get(task_id)
        with pytest.raises(RpcError) as cancelled:
            await stranger.request("tasks/cancel", {"taskId": task_id}, task_id)
    assert read.value.code == cancelled.value.code == INVALID_PARAMS
    async with wire(url, stack.keys["write"]) as owner:
        assert (await owner.get(task_id))["status"] != "cancelled"


async def test_the_bridge_key_file_and_the_credentials_are_root_only(stack: Stack) -> None:
    bridge = await anyio.Path(stack.data_dir / STACK_FILE).stat()
    assert (bridge.st_uid, stat.S_IMODE(bridge.st_mode)) == (0, 0o600)
    published = json.loads(await anyio.Path(stack.data_dir / STACK_FILE).read_text(encoding="utf-8"))
    assert published["pid"] == stack.pid and published["bridge_key"].startswith("mcps_")
    top = [path.name async for path in anyio.Path(stack.data_dir).iterdir()]
    assert await to_thread.run_sync(_probe_as_nobody, stack.data_dir, [".", *top]) == []
