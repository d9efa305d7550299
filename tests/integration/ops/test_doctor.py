"""`mcp-stack doctor` on a healthy stack and on a broken one: findings, report and exit status."""

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_servers.ops.accounts import create_dashboard_user
from mcp_servers.ops.doctor import Finding, format_report, run_checks
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.runtime_config import RuntimeConfigStore
from tests.integration.test_harness import issue_key
from tests.support import bind_loopback, free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@contextlib.asynccontextmanager
async def scripted_llm() -> AsyncIterator[str]:
    """An OpenAI-compatible endpoint that only lists its models (all doctor asks), requiring a bearer key."""

    async def models(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != "Bearer sk-doctor":
            return JSONResponse({"error": "bad key"}, status_code=401)
        return JSONResponse({"object": "list", "data": [{"id": "tiny", "object": "model"}]})

    async with serve_app(Starlette(routes=[Route("/v1/models", models)])) as url:
        yield f"{url}/v1"


def _http_ports() -> dict[str, Any]:
    return {f"{name}_port": free_port() for name in ("aidb", "hybrid", "ralph", "dashboard")}


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.check: finding for finding in findings}


async def test_a_healthy_stack_passes_every_check(stack_settings: StackSettings, tmp_path: Path) -> None:
    await issue_key(stack_settings, ["admin"])
    await create_dashboard_user(stack_settings, "ops", "admin", "long-enough")
    async with scripted_llm() as llm_url:
        settings = load_settings(
            data_dir=tmp_path / "data",
            postgres=stack_settings.postgres.model_dump(),
            http=_http_ports(),
            hybrid={
                "backends": [
                    {"name": "tiny", "kind": "local", "base_url": llm_url, "model": "tiny", "api_key": "sk-doctor"}
                ]
            },
            aidb={"allowed_roots": [tmp_path]},
            ralph={"command_templates": {"default": ["true"]}},
        )
        (tmp_path / "data").mkdir(mode=0o700)
        findings = await run_checks(settings)
    report = format_report(findings)
    assert [f for f in findings if f.status != "ok"] == [], report
    checks = by_check(findings)
    assert {
        "config",
        "data dir",
        "database",
        "migrations",
        "keys",
        "vectors",
        "embedder",
        "llm tiny",
        "sandbox",
    } <= set(checks)
    assert "384 dimensions" in checks["embedder"].detail
    assert report.endswith("all checks passed")


async def test_a_broken_stack_reports_each_problem_and_fails(tmp_path: Path) -> None:
    # A foreign program on the AIDB port, a database that does not answer, a wrong dimension, a dead LLM, no bwrap.
    foreign = bind_loopback()
    foreign.listen()
    with foreign:
        ports = _http_ports() | {"aidb_port": foreign.getsockname()[1]}
        settings = load_settings(
            data_dir=tmp_path / "data",
            postgres={"dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", "connect_timeout_seconds": 2},
            embedder={"dimension": 512},
            http=ports,
            hybrid={
                "backends": [
                    {"name": "gone", "kind": "remote", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "x"}
                ]
            },
            auth={"required": False},
            ralph={"bwrap_path": str(tmp_path / "no-bwrap"), "command_templates": {"default": ["claude", "-p"]}},
        )
        findings = await run_checks(settings)
    checks = by_check(findings)
    report = format_report(findings)
    assert checks["database"].status == "fail" and "MCP_STACK_POSTGRES__DSN" in checks["database"].detail
    assert checks["embedder"].status == "fail" and "512" in checks["embedder"].detail
    assert checks["llm gone"].status == "fail"
    assert checks["port aidb"].status == "fail" and "MCP_STACK_HTTP__AIDB_PORT" in checks["port aidb"].detail
    assert checks["port hybrid"].status == "ok"
    assert checks["auth"].status == "warn"
    assert checks["sandbox"].status == "fail" and "apt-get install bubblewrap" in checks["sandbox"].detail
    assert "[FAIL] database" in report and "5 problem(s)" in report


async def test_the_command_exits_non_zero_with_a_readable_report(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "MCP_STACK_DATA_DIR": str(tmp_path / "data"),
        "MCP_STACK_EMBEDDER__DIMENSION": "not-a-number",
    }
    result = await anyio.run_process(
        [sys.executable, "-m", "mcp_servers.cli", "doctor"], env=environment, check=False, stdin=subprocess.DEVNULL
    )
    output = result.stdout.decode()
    assert result.returncode == 1
    assert output.splitlines()[0].startswith("[FAIL] config") and "MCP_STACK_EMBEDDER__DIMENSION" in output


async def test_each_feature_that_is_off_is_one_finding_until_the_live_config_turns_it_on(
    stack_settings: StackSettings, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=stack_settings.data_dir, postgres=stack_settings.postgres.model_dump())
    off = by_check(await run_checks(settings))
    for check, step in [
        ("llm", "make run LLM=1"),
        ("ingest", "--root DIR"),
        ("agents", "ralph.command_templates"),
        ("dashboard users", "dashboard-user create"),
    ]:
        assert off[check].status == "warn" and step in off[check].detail, off[check]
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        await RuntimeConfigStore(database).set(settings, "aidb.allowed_roots", [str(tmp_path)], actor="t")
        await RuntimeConfigStore(database).set(settings, "ralph.command_templates", {"default": ["true"]}, actor="t")
    on = by_check(await run_checks(settings))
    assert on["ingest"].status == "ok" and on["agents"].status == "ok"
