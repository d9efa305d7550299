"""containers/compose.yaml under podman-compose: PostgreSQL and every server from secret files, started in health
order, within their limits; a document survives `down`/`up` and a Ralph task survives a container restart.

One substitution, by necessity: the Qdrant server image cannot be pulled or built here (no registry is reachable
and Debian packages no Qdrant), so the stack runs AIDB on the embedded engine (MCP_STACK_VECTORS__BACKEND=edge, its
data in AIDB's named volume) and the `qdrant` service and its dependencies are taken out of the file. PostgreSQL is
the image `scripts/provision-tools.sh containers` builds from Debian's postgresql-15 (POSTGRES_IMAGE), the servers
the image built from containers/Containerfile (MCP_STACK_IMAGE); both through compose.yaml's own variables.
"""

import json
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from tests.e2e.containers.engine import (
    apodman,
    assert_hardened,
    assert_loopback_only,
    assert_no_root_process,
    create_key,
    inspect,
    parse_time,
    podman,
    remove_everything,
    wait_healthy,
)
from tests.integration.ralph.ralph_support import call, read_iterations, wait_for_status
from tests.support import REPO, free_port, http_client
from tests.tools import container_images, podman_compose_path, podman_env

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.timeout(900)]

APPS = ("aidb", "hybrid", "ralph", "dashboard")
UP_ORDER = ("postgres", "aidb", "hybrid", "ralph", "dashboard")
# Two slow iterations, the promise on the second: long enough to restart the container in the middle of the first.
SLOW_AGENT = textwrap.dedent(
    """
    import os, time
    n = os.environ["RALPH_ITERATION"]
    with open("iterations.log", "a") as log:
        log.write(f"start {n}\\n")
    time.sleep(4)
    print(f"iteration {n} done")
    if int(n) >= 2:
        print("<promise>FINISHED</promise>")
    """
)


@dataclass
class Stack:
    project: str
    directory: Path
    ports: dict[str, int]
    token: str

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def compose(self, *args: str, timeout: float = 300) -> None:
        command = [str(podman_compose_path()), "-f", str(self.directory / "compose.yaml"), "-p", self.project, *args]
        result = subprocess.run(command, env=compose_env(), capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    def up(self, *services: str) -> str:
        """containers/podman-up.sh: each service once the healthchecks of those before it pass."""
        command = [str(REPO / "containers" / "podman-up.sh"), "-f", str(self.directory / "compose.yaml")]
        env = compose_env() | {"PODMAN_COMPOSE": str(podman_compose_path()), "HEALTH_TIMEOUT": "180"}
        result = subprocess.run(
            [*command, "-p", self.project, *services], env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result.stdout


def compose_env() -> dict[str, str]:
    images = container_images()
    return podman_env() | {"POSTGRES_IMAGE": images["POSTGRES_IMAGE"]}


def derive_compose(directory: Path, image: str, ports: dict[str, int]) -> None:
    """compose.yaml with the Qdrant substitution, free loopback ports and fast Ralph leases for the test."""
    compose: dict[str, Any] = yaml.safe_load((REPO / "containers" / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    for name in ("qdrant", "llama", "prometheus"):  # qdrant: see the module docstring; the others are profiles
        del services[name]
    for name, service in services.items():
        service["ports"] = [f"127.0.0.1:{ports[name]}:{port.rsplit(':', 1)[1]}" for port in service["ports"]]
        service.get("depends_on", {}).pop("qdrant", None)
        if name in APPS:
            service.pop("build")
            service["image"] = image
            environment = service["environment"]
            del environment["MCP_STACK_VECTORS__URL"], environment["MCP_STACK_VECTORS__API_KEY_FILE"]
            environment["MCP_STACK_VECTORS__BACKEND"] = "edge"
    services["ralph"]["environment"] |= {
        "MCP_STACK_RALPH__LEASE_SECONDS": "2",
        "MCP_STACK_RALPH__CONTROL_POLL_SECONDS": "0.1",
        "MCP_STACK_RALPH__COMMAND_TEMPLATES": json.dumps({"slow": ["python", "-c", SLOW_AGENT]}),
    }
    (directory / "compose.yaml").write_text(yaml.safe_dump(compose, sort_keys=False))


@pytest.fixture(scope="module")
def stack(stack_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("compose")
    shutil.copytree(REPO / "containers" / "secrets", directory / "secrets")
    subprocess.run(["sh", str(directory / "secrets" / "generate.sh")], check=True, capture_output=True)
    ports = {name: free_port() for name in UP_ORDER}
    derive_compose(directory, stack_image, ports)
    project = f"mcpstk-e2e-{uuid.uuid4().hex[:8]}"
    stack = Stack(project, directory, ports, token="")
    try:
        stack.up("postgres", "aidb")
        # The bootstrap of docs/operations.md: the services key goes into its secret file before the others start.
        stack.token = anyio.run(create_key, stack.container("aidb"), "read,write,admin")
        service_key = anyio.run(create_key, stack.container("aidb"), "read,write")
        (directory / "secrets" / "service_api_key").write_text(service_key)
        stack.up("hybrid", "ralph", "dashboard")
        yield stack
    finally:
        stack.compose("down", "-v", "-t", "0")
        remove_everything(label=f"io.podman.compose.project={project}")


async def test_the_stack_starts_in_health_order_from_secret_files_within_its_limits(stack: Stack) -> None:
    compose = yaml.safe_load((stack.directory / "compose.yaml").read_text())
    healthy_at: dict[str, Any] = {}
    for service in UP_ORDER:
        info = inspect(stack.container(service))
        spec = compose["services"][service]
        limits = spec["deploy"]["resources"]["limits"]
        units = {"g": 1024**3, "m": 1024**2}
        assert info["HostConfig"]["Memory"] == int(limits["memory"][:-1]) * units[limits["memory"][-1]]
        assert info["HostConfig"]["CpuQuota"] == int(float(limits["cpus"]) * info["HostConfig"]["CpuPeriod"])
        # Health order: started only after each dependency's healthcheck had passed.
        started = parse_time(info["State"]["StartedAt"])
        for dependency in spec.get("depends_on", {}):
            assert started > healthy_at[dependency], (service, dependency)
        passes = [parse_time(entry["End"]) for entry in info["State"]["Health"]["Log"] if entry["ExitCode"] == 0]
        healthy_at[service] = min(passes)
        # Secrets are files under /run/secrets, none of their values is in the environment.
        secrets = {mount["Destination"] for mount in info["Mounts"] if mount["Destination"].startswith("/run/secrets/")}
        assert secrets == {f"/run/secrets/{name}" for name in spec["secrets"]}
        environment = "\n".join(info["Config"]["Env"])
        for name in spec["secrets"]:
            assert (stack.directory / "secrets" / name).read_text().strip() not in environment
        assert_loopback_only(stack.container(service))
    assert inspect(stack.container("postgres"))["Config"]["User"] == "999:999"
    assert_no_root_process(stack.container("postgres"), "postgres")
    async with httpx.AsyncClient(timeout=10) as client:
        for service in APPS:
            assert_hardened(stack.container(service))
            health = await client.get(f"{stack.url(service)}/health")
            assert health.status_code == 200 and health.json()["status"] == "ok", service
    for service in ("aidb", "hybrid", "ralph"):
        with anyio.fail_after(60):
            async with http_client(stack.url(service), stack.token) as mcp:
                assert (await mcp.list_tools()).tools, service
    # Ready = every dependency answers (PostgreSQL from the DSN secret; AIDB's embedder and vector engine).
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {stack.token}"}) as client:
        for service in ("aidb", "hybrid", "ralph"):
            ready = await client.get(f"{stack.url(service)}/ready")
            assert ready.status_code == 200, (service, ready.text)
            assert ready.json()["checks"]["postgres"] == "ok"


async def test_a_document_survives_down_and_up_and_a_ralph_task_survives_a_restart(stack: Stack) -> None:
    ralph = stack.container("ralph")
    workspace = "/var/lib/mcp-stack/workspaces/restart"
    await apodman("exec", ralph, "mkdir", "-p", workspace)
    async with http_client(stack.url("aidb"), stack.token) as aidb:
        stored = await call(
            aidb, "store_document", title="Durable", content="Named volumes keep the knowledge base across down/up."
        )
    async with http_client(stack.url("ralph"), stack.token) as client:
        submitted = await call(
            client, "submit_task", prompt="run twice", backend="command:slow", completion_promise="FINISHED",
            max_iterations=5, workspace=workspace,
        )  # fmt: skip
        log = f"{workspace}/iterations.log"
        with anyio.fail_after(60):
            while "start 1" not in (await apodman("exec", ralph, "cat", log, check=False)).stdout:
                await anyio.sleep(0.2)
    await apodman("restart", "-t", "10", ralph)
    # The healthcheck is run by hand (no systemd timer); the server answers once it is healthy again.
    await wait_healthy(ralph, timeout=120)
    async with http_client(stack.url("ralph"), stack.token) as client:
        task = await wait_for_status(client, submitted["task_id"], timeout=120)
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"]) == ("completed", "promise_found")
    assert iterations[0]["status"] == "interrupted", iterations  # the restart cut the first iteration
    assert iterations[-1]["status"] == "ok"

    await anyio.to_thread.run_sync(lambda: stack.compose("down", "-t", "10"))
    assert not podman("ps", "-a", "-q", "--filter", f"label=io.podman.compose.project={stack.project}").stdout.split()
    await anyio.to_thread.run_sync(lambda: stack.up("postgres", "aidb", "hybrid", "ralph"))
    async with http_client(stack.url("aidb"), stack.token) as aidb:
        document = await call(aidb, "get_document", document_id=stored["document_id"])
        assert "Named volumes keep the knowledge base" in json.dumps(document)
        found = await call(aidb, "search", query="what keeps the knowledge base across down and up")
        assert stored["document_id"] in json.dumps(found)
    async with http_client(stack.url("ralph"), stack.token) as client:
        assert (await call(client, "task_status", task_id=submitted["task_id"]))["status"] == "completed"
