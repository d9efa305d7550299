"""The real container engine for the e2e tests: podman with the project's containers.conf, the stack image built
once (its layers cached in podman's store), healthchecks run on demand, cleanup by name prefix and label."""

import hashlib
import json
import re
import subprocess
import uuid
from datetime import datetime
from typing import Any

import anyio

from tests.support import REPO
from tests.tools import container_images, podman_env

#: Every container, volume, pod and network a test creates starts with this (cleanup never touches anything else).
PREFIX = "mcpstk-e2e"
BUILD_TIMEOUT = 900
#: The tag of the stack image this checkout builds (one per checkout, so two checkouts never overwrite each other).
STACK_IMAGE = f"localhost/mcp-stack:e2e-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}"
_TOKEN = re.compile(r"^token:\s+(\S+)$", re.MULTILINE)


def unique_name(what: str) -> str:
    return f"{PREFIX}-{uuid.uuid4().hex[:8]}-{what}"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run podman (blocking: fixtures and cleanup only); raise with its stderr when it fails and `check`."""
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... failed ({result.returncode}): {result.stderr[-3000:]}")
    return result


async def apodman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """podman off the event loop."""
    return await anyio.to_thread.run_sync(lambda: podman(*args, timeout=timeout, check=check))


def build_stack_image() -> str:
    """Build containers/Containerfile on the Debian base image from the wheelhouse alone (no network); its tag.

    `--format docker` keeps the HEALTHCHECK (podman drops it from OCI-format images). A build whose layers are all
    cached takes seconds; the first one a few minutes.
    """
    images = container_images()
    podman(
        "build",
        "--format",
        "docker",
        "--network",
        "none",
        "--build-arg",
        f"PYTHON_IMAGE={images['PYTHON_IMAGE']}",
        "--build-arg",
        "WHEELS_ONLY=1",
        "-f",
        str(REPO / "containers" / "Containerfile"),
        "-t",
        STACK_IMAGE,
        str(REPO),
        timeout=BUILD_TIMEOUT,
    )
    return STACK_IMAGE


def inspect(container: str) -> dict[str, Any]:
    loaded = json.loads(podman("inspect", "--type", "container", container).stdout)
    assert isinstance(loaded, list) and len(loaded) == 1
    result: dict[str, Any] = loaded[0]
    return result


async def wait_healthy(container: str, *, timeout: float = 180) -> None:
    """Run the container's healthcheck until it passes (podman 4.3 runs none by itself without systemd)."""
    with anyio.fail_after(timeout):
        while (await apodman("healthcheck", "run", container, check=False)).returncode != 0:
            state = inspect(container)["State"]
            if not state["Running"]:
                logs = podman("logs", "--tail", "30", container, check=False)
                raise RuntimeError(f"{container} exited ({state['ExitCode']}): {logs.stdout}{logs.stderr}")
            await anyio.sleep(0.5)
    assert inspect(container)["State"]["Health"]["Status"] == "healthy"


async def create_key(container: str, scopes: str) -> str:
    """`mcp-stack keys create` inside a running server container; the token it prints once."""
    result = await apodman("exec", container, "mcp-stack", "keys", "create", "--name", "e2e", "--scopes", scopes)
    match = _TOKEN.search(result.stdout)
    assert match is not None, result.stdout
    return match.group(1)


def assert_no_root_process(container: str, user: str) -> None:
    """Every process in the container runs as `user` (its name in the container's /etc/passwd)."""
    top = podman("top", container, "user", "args").stdout.splitlines()[1:]
    assert top, "podman top listed no process"
    assert all(line.split()[0] == user for line in top), top


def assert_hardened(container: str, uid: int = 10001, user: str = "mcpstack") -> None:
    """Runs as `uid`, read-only root, no capability, no-new-privileges; no process in it runs as root."""
    info = inspect(container)
    assert info["Config"]["User"] == f"{uid}:{uid}"
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert "no-new-privileges" in info["HostConfig"]["SecurityOpt"]
    status = podman("exec", container, "cat", "/proc/1/status").stdout
    assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE), status
    assert_no_root_process(container, user)
    write = podman("exec", container, "touch", "/opt/mcp-stack/probe", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write


def assert_loopback_only(container: str) -> None:
    for bindings in (inspect(container)["NetworkSettings"]["Ports"] or {}).values():
        for binding in bindings or []:
            assert binding["HostIp"] == "127.0.0.1", binding


def parse_time(value: str) -> datetime:
    """podman's RFC 3339 times with nanoseconds, to the microsecond."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    assert match is not None, value
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}")


def remove_everything(label: str | None = None, names: list[str] | None = None) -> None:
    """Remove the containers, pods, volumes and networks of one test (by compose project label or by name)."""
    if label is not None:
        ids = podman("ps", "-a", "-q", "--filter", f"label={label}", check=False).stdout.split()
        if ids:
            podman("rm", "-f", "-t", "0", *ids, check=False)
        for kind in ("pod", "volume", "network"):
            listed = podman(kind, "ls", "-q", "--filter", f"label={label}", check=False).stdout.split()
            if listed:
                podman(kind, "rm", "-f", *listed, check=False)
    for name in names or []:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("volume", "rm", "-f", name, check=False)
