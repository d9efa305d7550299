"""Helpers shared by tests: serve an ASGI app on a loopback port, connect real MCP clients, wait on conditions."""

import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import httpx2
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def bind_loopback() -> socket.socket:
    """A listening-ready socket on 127.0.0.1 with an OS-assigned port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn sets TCP_NODELAY only on sockets it binds itself; accepted sockets inherit it from the listener.
    # Without it, Nagle + delayed ACK add ~40 ms to every response written in more than one send.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with contextlib.closing(bind_loopback()) as sock:
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_app(app: ASGIApp, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Run an ASGI app with uvicorn on this event loop; yield its base URL; shut down on exit."""
    sock = sock or bind_loopback()
    port = sock.getsockname()[1]
    # No forwarded headers believed (uvicorn trusts loopback's by default): apps see the real peer.
    config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=2, proxy_headers=False)
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(30):
            while not server.started:
                if server.should_exit:
                    raise RuntimeError("uvicorn failed to start")
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@contextlib.asynccontextmanager
async def http_client(url: str, token: str | None, *, mode: str = "legacy") -> AsyncIterator[Client]:
    """A connected MCP client over Streamable HTTP, with a bearer token and a pinned protocol era."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # The SDK leaves a caller-provided HTTP client open, so this helper owns and closes it.
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def stdio_client(args: list[str], env: Mapping[str, str]) -> Client:
    """An MCP client that launches `mcp-stack` as a subprocess and talks over stdio."""
    params = StdioServerParameters(command=str(VENV_BIN / "mcp-stack"), args=args, env=dict(env))
    return Client(params, mode="legacy")


async def wait_until(condition: Callable[[], Awaitable[bool]], *, timeout: float = 10, interval: float = 0.05) -> None:
    """Poll an async condition until it holds; fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(interval)


async def wait_http_ok(url: str, *, timeout: float = 60, process: subprocess.Popen[Any] | None = None) -> None:
    """Poll a URL until it answers 200 (fails early if the process it belongs to exits)."""
    async with httpx.AsyncClient(timeout=2) as client:

        async def ok() -> bool:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
            try:
                return (await client.get(url)).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ok, timeout=timeout, interval=0.1)


@contextlib.asynccontextmanager
async def recording_listener() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A loopback HTTP listener that records each request's headers (lower-case names) and answers 503.

    Yields its base URL and the list it appends to: an empty list afterwards means nothing connected.
    """
    seen: list[dict[str, str]] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            head = b""
            with anyio.move_on_after(10):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    try:
                        head += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            seen.append(
                {"request-line": lines[0]}
                | {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:])
                    if name
                }
            )
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, answer)
        try:
            yield f"http://127.0.0.1:{port}", seen
        finally:
            tg.cancel_scope.cancel()
