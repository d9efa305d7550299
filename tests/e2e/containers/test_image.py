"""The stack image under the real engine: `podman run` as containers/Containerfile documents it, hardened the way
compose.yaml runs it (read-only root, no capability, no-new-privileges), on its own embedded PostgreSQL."""

import anyio
import httpx
import pytest

from tests.e2e.containers.engine import (
    apodman,
    assert_hardened,
    assert_loopback_only,
    create_key,
    remove_everything,
    unique_name,
    wait_healthy,
)
from tests.support import free_port, http_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(600)]


async def test_the_image_runs_hardened_turns_healthy_and_answers_on_a_loopback_port(stack_image: str) -> None:
    name = unique_name("aidb")
    port = free_port()
    try:
        # The image's default command (serve aidb over HTTP) and its own HEALTHCHECK; no DSN: embedded PostgreSQL
        # in the data volume.
        await apodman(
            "run", "-d", "--name", name, "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp",
            "-v", f"{name}:/var/lib/mcp-stack", "-p", f"127.0.0.1:{port}:8801", stack_image,
        )  # fmt: skip
        assert (await apodman("inspect", "--format", "{{.State.Health.Status}}", name)).stdout.strip() == "starting"
        await wait_healthy(name, timeout=180)
        assert_hardened(name)
        assert_loopback_only(name)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=10) as client:
            health = await client.get(f"{url}/health")
            assert health.status_code == 200 and health.json()["server"] == "aidb"
            anonymous = await client.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert anonymous.status_code == 401
        token = await create_key(name, "read")
        with anyio.fail_after(60):
            async with http_client(url, token) as mcp:
                tools = {tool.name for tool in (await mcp.list_tools()).tools}
        assert {"store_document", "search", "find_tools"} <= tools
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: remove_everything(names=[name]))
