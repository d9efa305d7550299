"""The official MCP conformance suite and the MCP Inspector CLI against every server, as real processes.

Conformance: `--suite all` over Streamable HTTP, compared with conformance-baseline.json (scenario -> reason): an
unlisted failure fails the test, and so does a listed scenario that now passes. The suite cannot send a bearer
header, so those servers run with auth off on 127.0.0.1 (the baseline says so; test_auth_scan.py covers auth).
Inspector: tools, resources, resource templates and prompts listed, one tool called, over stdio and over HTTP
with a bearer key.
"""

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_servers.shared.config import StackSettings
from tests.e2e.hardening.processes import served, stack_env
from tests.e2e.test_transports import issue_key
from tests.support import VENV_BIN
from tests.tools import conformance_command, inspector_command

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

BASELINE = Path(__file__).with_name("conformance-baseline.json")
SERVERS = ("aidb", "hybrid", "ralph")
# One cheap read-only tool per server for the Inspector's tools/call.
PROBE_TOOL = {"aidb": "stats", "hybrid": "learning_stats", "ralph": "list_tasks"}
LIST_METHODS = ("tools/list", "resources/list", "resources/templates/list", "prompts/list")
SUITE_TIMEOUT_SECONDS = 180
TIMESTAMP = re.compile(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$")  # the suite's own suffix pattern


def expected_failures(server: str) -> dict[str, str]:
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    return {**baseline["all"], **baseline[server]}


def scenario_results(output_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """scenario -> its checks, from the suite's `server-<scenario>-<timestamp>/checks.json` directories."""
    results: dict[str, list[dict[str, Any]]] = {}
    for checks in sorted(output_dir.glob("server-*/checks.json")):
        scenario = TIMESTAMP.sub("", checks.parent.name.removeprefix("server-"))
        results[scenario] = json.loads(checks.read_text(encoding="utf-8"))
    return results


def failed(checks: list[dict[str, Any]]) -> bool:
    return any(check.get("status") in ("FAILURE", "WARNING") for check in checks)


def test_baseline_gives_every_entry_a_reason() -> None:
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    for server in ("all", *SERVERS):
        for scenario, reason in baseline[server].items():
            assert isinstance(reason, str) and len(reason) >= 20, f"{server}/{scenario} needs a reason"


@pytest.mark.parametrize("server", SERVERS)
async def test_conformance_suite_matches_the_baseline(
    server: str, module_settings: StackSettings, tmp_path: Path
) -> None:
    output = tmp_path / "conformance"
    async with served(server, module_settings, tmp_path / "logs", {"MCP_STACK_AUTH__REQUIRED": "false"}) as proc:
        run = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                [*conformance_command(), "server", "--url", f"{proc.url}/mcp", "--suite", "all", "-o", str(output)],
                capture_output=True,
                text=True,
                timeout=SUITE_TIMEOUT_SECONDS,
                check=False,
            )
        )
    results = scenario_results(output)
    assert len(results) >= 30, run.stdout[-3000:] + run.stderr[-3000:]
    expected = expected_failures(server)
    unexpected = {
        name: [c.get("errorMessage") or c.get("description") for c in checks if c.get("status") != "SUCCESS"]
        for name, checks in results.items()
        if failed(checks) and name not in expected
    }
    stale = sorted(name for name in expected if name in results and not failed(results[name]))
    unknown = sorted(name for name in expected if name not in results)
    assert not unexpected, f"failures not in {BASELINE.name}: {unexpected}"
    assert not stale, f"now passing, remove from {BASELINE.name} ({server}): {stale}"
    assert not unknown, f"{BASELINE.name} lists scenarios the suite no longer has ({server}): {unknown}"


def run_inspector(args: list[str]) -> dict[str, Any]:
    argv = [*inspector_command(), *args, "--format", "json", "-q"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"inspector {args[-4:]} exited {result.returncode}: {result.stderr[-2000:]}"
    body = json.loads(result.stdout)
    return dict(body.get("result", body))


Target = Callable[[str], list[str]]


async def inspect(
    target: Target, trailing: list[str], methods: tuple[str, ...], server: str
) -> dict[str, dict[str, Any]]:
    """The list methods plus one tools/call, concurrently (at most two at a time); method -> result."""
    trailing = ["--connect-timeout", "60000", *trailing]
    calls = {method: [*target(method), "--method", method, *trailing] for method in methods}
    calls["tools/call"] = [*target("call"), "--method", "tools/call", "--tool-name", PROBE_TOOL[server], *trailing]
    results: dict[str, dict[str, Any]] = {}
    # Over stdio each call starts a server process: two at a time on two cores.
    limiter = anyio.CapacityLimiter(2)

    async def one(method: str, args: list[str]) -> None:
        results[method] = await anyio.to_thread.run_sync(run_inspector, args, limiter=limiter)

    async with anyio.create_task_group() as tg:
        for method, args in calls.items():
            tg.start_soon(one, method, args)
    return results


def assert_inspected(results: dict[str, dict[str, Any]], server: str) -> None:
    assert PROBE_TOOL[server] in {tool["name"] for tool in results["tools/list"]["tools"]}
    assert isinstance(results["resources/list"]["resources"], list)  # Hybrid offers none
    if "resources/templates/list" in results:
        assert isinstance(results["resources/templates/list"]["resourceTemplates"], list)
    assert isinstance(results["prompts/list"]["prompts"], list)
    called = results["tools/call"]
    assert called.get("isError") is False and isinstance(called.get("structuredContent"), dict), called


@pytest.mark.parametrize("server", SERVERS)
async def test_inspector_lists_and_calls_over_stdio(server: str, module_settings: StackSettings) -> None:
    # Templates are listed over HTTP only: every stdio call costs a server start-up.
    methods = ("tools/list", "resources/list", "prompts/list")

    def target(method: str) -> list[str]:
        # Concurrent processes must not share an embedded vector store: one data dir per call.
        data_dir = module_settings.data_dir / f"stdio-{server}-{method.replace('/', '-')}"
        env = stack_env(module_settings, MCP_STACK_DATA_DIR=str(data_dir))
        env_args = [a for key, value in env.items() if key.startswith("MCP_STACK_") for a in ("-e", f"{key}={value}")]
        return [*env_args, str(VENV_BIN / "mcp-stack"), "serve", server, "--transport", "stdio"]

    assert_inspected(await inspect(target, [], methods, server), server)


@pytest.mark.parametrize("server", SERVERS)
async def test_inspector_lists_and_calls_over_http_with_a_key(
    server: str, module_settings: StackSettings, tmp_path: Path
) -> None:
    token = await issue_key(module_settings, ["read"])
    async with served(server, module_settings, tmp_path / "logs") as proc:
        trailing = ["--protocol-era", "modern", "--stored-auth-only", "--header", f"Authorization: Bearer {token}"]
        assert_inspected(await inspect(lambda _: [f"{proc.url}/mcp"], trailing, LIST_METHODS, server), server)
