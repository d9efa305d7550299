"""The official MCP conformance suite and the MCP Inspector CLI against every server, as real processes.

Conformance: the pinned alpha runs `server --requirements 2025-11-25` and `--requirements 2026-07-28` (what each
revision requires: the `server:` list of the suite's requirements/<revision>.yaml is scored) against each server
over Streamable HTTP, both revisions at once against one process. The suite cannot send a bearer header, so
those servers run with auth off on 127.0.0.1 (test_auth_scan.py covers auth).
- The fixture server (tests/e2e/conformance_fixture_server.py: StackServer, full middleware, the suite's fixture
  tools, resources and prompts, the tasks extension) must pass every check of every scored scenario and of every
  extension scenario (the tasks suite, which the suite runs without scoring), warnings included.
- A production server fails the test on any FAILURE in a scored scenario, and in an extension scenario when it
  advertises the tasks extension (AIDB, Ralph), that the suite's own result does not pin on an absent fixture
  (`fixture_absent`): no hand-kept list of scenarios.
Inspector: tools, resources, resource templates and prompts listed, one tool called, over stdio and over HTTP,
in both protocol eras.
"""

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from tests.e2e.conformance_fixture_server import create_fixture_server
from tests.e2e.hardening.processes import START_TIMEOUT_SECONDS, STOP_TIMEOUT_SECONDS, served, stack_env
from tests.e2e.test_transports import issue_key
from tests.support import VENV_BIN, free_port, http_client, wait_http_ok
from tests.tools import REPO, conformance_next_command, conformance_requirements, inspector_command

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

SERVERS = ("aidb", "hybrid", "ralph")
REVISIONS = ("2025-11-25", "2026-07-28")
# One cheap read-only tool per server for the Inspector's tools/call.
PROBE_TOOL = {"aidb": "stats", "hybrid": "learning_stats", "ralph": "list_tasks"}
LIST_METHODS = ("tools/list", "resources/list", "resources/templates/list", "prompts/list")
SUITE_TIMEOUT_SECONDS = 180
TIMESTAMP = re.compile(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$")  # the suite's own suffix pattern
# How our middleware and the SDK answer a name the server does not declare, and the suite's own "not found".
UNKNOWN_NAME = re.compile(r"Unknown (?:tool|prompt|resource): '?([^'\s]+)'?|Tool '([^']+)' not found")
WORD = re.compile(r"[A-Za-z_]\w*")
FIXTURE_UNAVAILABLE = re.compile(r"\bfixture\b[^;]*\bunavailable\b")
PASSED = ("SUCCESS", "INFO", "SKIPPED")


def scored(revision: str) -> list[str]:
    """The server scenarios a revision requires, from the suite's own requirements file."""
    requirements = yaml.safe_load(conformance_requirements(revision).read_text(encoding="utf-8"))
    return [str(name) for name in requirements["server"]]


def extension_scenarios(revision: str) -> list[str]:
    """The server scenarios of protocol extensions (the tasks suite): run, not scored by the suite, scored here."""
    requirements = yaml.safe_load(conformance_requirements(revision).read_text(encoding="utf-8"))
    return [
        str(entry["scenario"])
        for entry in requirements.get("not_scored") or []
        if entry.get("leg") == "server" and entry.get("reason") == "extension"
    ]


def counted(revision: str) -> list[str]:
    """What the fixture server must pass: the scored scenarios and the extension ones."""
    return scored(revision) + extension_scenarios(revision)


def offers_tasks(results: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether the suite found the tasks extension advertised (a server without it is not held to its scenarios)."""
    checks = results.get("tasks-capability-negotiation", [])
    return any(c.get("id") == "tasks-extension-advertised" and c.get("status") == "SUCCESS" for c in checks)


def scenario_results(output_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """scenario -> its checks, from the suite's `server-<scenario>-<timestamp>/checks.json` directories."""
    results: dict[str, list[dict[str, Any]]] = {}
    for checks in sorted(output_dir.glob("server-*/checks.json")):
        scenario = TIMESTAMP.sub("", checks.parent.name.removeprefix("server-"))
        results[scenario] = json.loads(checks.read_text(encoding="utf-8"))
    return results


def fixture_names(settings: StackSettings) -> set[str]:
    """The tools and prompts the fixture server declares: the suite's fixtures (building it opens nothing)."""
    server = create_fixture_server(build_core("hybrid", settings))
    return set(server.declared_names)


def fixture_absent(scenario: str, check: dict[str, Any], declared: set[str], fixtures: set[str]) -> bool:
    """Whether the suite's result pins this failed check on a fixture the server does not declare.

    - the suite says so itself: `details.untestable` / "Not testable: ..." (its diagnostic tools);
    - the check failed on the unknown-name answer for a tool, prompt or resource the server does not list;
    - the message names a suite fixture the server does not list, or says the fixture a check needs is unavailable
      (a tasks check whose preparing step called a fixture tool);
    - the scenario runs on its namesake fixture tool (`test_<scenario>`, e.g. the SEP-2322 ones, whose checks say
      only "Expected InputRequiredResult" or "Prerequisite failed"), which the server does not declare.
    """
    message = str(check.get("errorMessage") or "")
    if (check.get("details") or {}).get("untestable") is True or message.startswith("Not testable"):
        return True
    names = {name for match in UNKNOWN_NAME.finditer(message) for name in match.groups() if name}
    if names and not names & declared:
        return True
    # The suite names the fixture it called ("tools/call for failing_job returned ...") or says one was missing.
    mentioned = set(WORD.findall(message)) & fixtures
    if (mentioned and not mentioned & declared) or FIXTURE_UNAVAILABLE.search(message):
        return True
    namesake = "test_" + scenario.replace("-", "_")
    return namesake in fixtures and namesake not in declared


async def declared_names(url: str) -> set[str]:
    """Every tool, prompt, resource URI and resource template the server lists (2026-07-28 era)."""
    async with http_client(url, None, mode="2026-07-28") as client:
        tools = (await client.list_tools()).tools
        prompts = (await client.list_prompts()).prompts
        resources = (await client.list_resources()).resources
        templates = (await client.list_resource_templates()).resource_templates
    return (
        {tool.name for tool in tools}
        | {prompt.name for prompt in prompts}
        | {str(resource.uri) for resource in resources}
        | {template.uri_template for template in templates}
    )


async def run_suite(url: str, output: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Both revisions against one server, concurrently; revision -> scenario -> checks."""
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    async def one(revision: str) -> None:
        argv = [*conformance_next_command(), "server", "--url", f"{url}/mcp", "--requirements", revision]
        argv += ["-o", str(output / revision)]
        runs[revision] = await anyio.to_thread.run_sync(
            lambda: subprocess.run(argv, capture_output=True, text=True, timeout=SUITE_TIMEOUT_SECONDS, check=False)
        )

    async with anyio.create_task_group() as tg:
        for revision in REVISIONS:
            tg.start_soon(one, revision)
    results = {revision: scenario_results(output / revision) for revision in REVISIONS}
    for revision in REVISIONS:
        missing = sorted(set(counted(revision)) - set(results[revision]))
        assert not missing, f"{revision}: no result for {missing}: {runs[revision].stdout[-3000:]}"
    return results


def problems(checks: list[dict[str, Any]], statuses: tuple[str, ...]) -> list[str]:
    return [f"{c.get('id')}: {c.get('errorMessage')}" for c in checks if c.get("status") in statuses]


@contextlib.asynccontextmanager
async def fixture_server(settings: StackSettings, log_dir: Path) -> AsyncIterator[str]:
    port = free_port()
    env = stack_env(settings, MCP_STACK_AUTH__REQUIRED="false")
    await anyio.Path(log_dir).mkdir(parents=True, exist_ok=True)
    with (log_dir / "fixture.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.conformance_fixture_server", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=REPO,
        )
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=START_TIMEOUT_SECONDS, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await anyio.to_thread.run_sync(process.wait, STOP_TIMEOUT_SECONDS)


async def test_fixture_server_passes_every_scored_scenario_of_both_revisions(
    module_settings: StackSettings, tmp_path: Path
) -> None:
    async with fixture_server(module_settings, tmp_path / "logs") as url:
        results = await run_suite(url, tmp_path / "conformance")
    for revision in REVISIONS:
        failing = {
            name: found
            for name in counted(revision)
            if (found := problems(results[revision][name], ("FAILURE", "WARNING")))
        }
        assert not failing, f"{revision}: the fixture server fails {failing}"


@pytest.mark.parametrize("server", SERVERS)
async def test_conformance_failures_are_only_absent_fixtures(
    server: str, module_settings: StackSettings, tmp_path: Path
) -> None:
    async with served(server, module_settings, tmp_path / "logs", {"MCP_STACK_AUTH__REQUIRED": "false"}) as proc:
        results = await run_suite(proc.url, tmp_path / "conformance")
        declared = await declared_names(proc.url)
    fixtures = fixture_names(module_settings)
    defects = {
        f"{revision} {name}": [
            f"{c.get('id')}: {c.get('errorMessage')}"
            for c in results[revision][name]
            if c.get("status") == "FAILURE" and not fixture_absent(name, c, declared, fixtures)
        ]
        for revision in REVISIONS
        for name in (counted(revision) if offers_tasks(results[revision]) else scored(revision))
    }
    defects = {name: found for name, found in defects.items() if found}
    assert not defects, f"{server}: conformance defects {defects}"
    # The features this server does implement pass outright in both eras.
    for revision in REVISIONS:
        for name in ("tools-list", "completion-complete", "dns-rebinding-protection"):
            assert not problems(results[revision][name], ("FAILURE",)), (revision, name)


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


ERAS = ("legacy", "modern")  # the Inspector's --protocol-era: 2025-11-25 handshake, or stateless 2026-07-28


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("server", SERVERS)
async def test_inspector_lists_and_calls_over_stdio(server: str, era: str, module_settings: StackSettings) -> None:
    # Templates are listed over HTTP only: every stdio call costs a server start-up.
    methods = ("tools/list", "resources/list", "prompts/list")

    def target(method: str) -> list[str]:
        # Concurrent processes must not share an embedded vector store: one data dir per call.
        data_dir = module_settings.data_dir / f"stdio-{server}-{era}-{method.replace('/', '-')}"
        env = stack_env(module_settings, MCP_STACK_DATA_DIR=str(data_dir))
        env_args = [a for key, value in env.items() if key.startswith("MCP_STACK_") for a in ("-e", f"{key}={value}")]
        return [*env_args, str(VENV_BIN / "mcp-stack"), "serve", server, "--transport", "stdio"]

    assert_inspected(await inspect(target, ["--protocol-era", era], methods, server), server)


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("server", SERVERS)
async def test_inspector_lists_and_calls_over_http_with_a_key(
    server: str, era: str, module_settings: StackSettings, tmp_path: Path
) -> None:
    token = await issue_key(module_settings, ["read"])
    async with served(server, module_settings, tmp_path / "logs") as proc:
        trailing = ["--protocol-era", era, "--stored-auth-only", "--header", f"Authorization: Bearer {token}"]
        assert_inspected(await inspect(lambda _: [f"{proc.url}/mcp"], trailing, LIST_METHODS, server), server)
