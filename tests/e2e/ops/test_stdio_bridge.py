"""Stdio entry points beside `mcp-stack up`: served through the running stack, and one clear line on a conflict."""

import contextlib
import re
import signal
import subprocess
from collections.abc import AsyncIterator

import anyio
import pytest
from anyio.abc import Process
from mcp import Client, StdioServerParameters

from mcp_servers.ops.stack_file import STACK_FILE
from mcp_servers.ops.supervisor import UP_ORDER
from mcp_servers.shared.config import StackSettings
from tests.e2e.test_transports import stack_env
from tests.support import VENV_BIN, free_port, http_client
from tests.tools import gemma_model_path

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def _env(settings: StackSettings, ports: dict[str, int]) -> dict[str, str]:
    return stack_env(settings) | {f"MCP_STACK_HTTP__{name.upper()}_PORT": str(port) for name, port in ports.items()}


@contextlib.asynccontextmanager
async def running_stack(env: dict[str, str], *options: str) -> AsyncIterator[tuple[Process, str]]:
    """`mcp-stack up` until the block ends; yields the process and its banner (up to the footer)."""
    process = await anyio.open_process(
        [str(VENV_BIN / "mcp-stack"), "up", *options], env=env, stderr=subprocess.DEVNULL
    )
    try:
        assert process.stdout is not None
        banner = ""
        with anyio.fail_after(240):
            async for chunk in process.stdout:
                banner += chunk.decode()
                if "Features that are off" in banner:
                    break
        yield process, banner
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_stdio_entry_point_serves_through_the_running_stack(stack_settings: StackSettings) -> None:
    ports = {name: free_port() for name in UP_ORDER}
    env = _env(stack_settings, ports)
    async with running_stack(env) as (_, banner):
        stack_file = stack_settings.data_dir / STACK_FILE
        assert stack_file.stat().st_mode & 0o077 == 0
        credentials = (stack_settings.data_dir / "initial-credentials").read_text(encoding="utf-8")
        admin_key = re.search(r"^admin_api_key=(\S+)$", credentials, re.MULTILINE)
        assert admin_key is not None and admin_key.group(1) in banner
        assert stack_settings.data_dir.joinpath("initial-credentials").stat().st_mode & 0o077 == 0
        params = StdioServerParameters(command=str(VENV_BIN / "mcp-aidb"), env=env)
        async with Client(params, mode="legacy") as client:
            stored = await client.call_tool(
                "store_document", {"title": "Bridge note", "content": "stdio reaches the running stack"}
            )
            assert not stored.is_error, stored
            assert stored.structured_content is not None
            document_id = stored.structured_content["document_id"]
        # The same document, read over HTTP from the server `up` runs: one store, no second embedded copy.
        async with http_client(f"http://127.0.0.1:{ports['aidb']}", admin_key.group(1)) as aidb:
            fetched = await aidb.call_tool("get_document", {"document_id": document_id})
        assert not fetched.is_error and fetched.structured_content is not None
        assert fetched.structured_content["title"] == "Bridge note"
    assert not stack_file.exists()


async def test_up_beside_an_embedded_stdio_server_ends_in_one_line(stack_settings: StackSettings) -> None:
    ports = {name: free_port() for name in UP_ORDER}
    env = _env(stack_settings, ports)
    params = StdioServerParameters(command=str(VENV_BIN / "mcp-aidb"), env=env)
    async with Client(params, mode="legacy") as client:
        assert not (await client.call_tool("stats", {})).is_error  # the embedded store is open now
        result = await anyio.run_process(
            [str(VENV_BIN / "mcp-stack"), "up"], env=env, check=False, stdin=subprocess.DEVNULL
        )
        second = await anyio.run_process([str(VENV_BIN / "mcp-aidb")], env=env, check=False, input=b"")
    for refused in (result, second):
        lines = refused.stderr.decode().splitlines()
        assert refused.returncode == 2
        assert len(lines) == 1 and lines[0].startswith("mcp-stack: "), lines
        assert "vector store" in lines[0] and "Traceback" not in lines[0]
    assert b"mcp-stack is up" not in result.stdout
    assert not await anyio.Path(stack_settings.data_dir / STACK_FILE).exists()


async def test_up_with_the_local_llm_answers_route_query(stack_settings: StackSettings) -> None:
    gemma_model_path()  # provisioned by `scripts/provision-tools.sh llama` (the suite's `make tools`)
    ports = {name: free_port() for name in UP_ORDER}
    env = _env(stack_settings, ports)
    async with running_stack(env, "--local-llm") as (_, banner):
        admin_key = re.search(r"^\s+(mcps_\S+)$", banner, re.MULTILINE)
        assert admin_key is not None, banner
        async with http_client(f"http://127.0.0.1:{ports['hybrid']}", admin_key.group(1)) as hybrid:
            answer = await hybrid.call_tool("route_query", {"prompt": "Say hello.", "max_tokens": 16})
        assert not answer.is_error, answer
        assert answer.structured_content is not None
        assert answer.structured_content["backend"] == "local"
