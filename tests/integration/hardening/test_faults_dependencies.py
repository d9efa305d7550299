"""Faults of HTTP dependencies, played by scripted OpenAI-compatible servers on 127.0.0.1.

Embedder: AIDB on the OpenAI-compatible embedder; the endpoint then fails with 5xx, garbage, zero vectors, the
wrong dimension or a hang. Every store is refused with a clear tool error (no crash, no half-stored document, no
zero vector), the breaker opens on 5xx and stops the calls, and AIDB recovers when the endpoint does.
LLM: Hybrid's local backend answers garbage or hangs: `route_query` falls back to the remote backend; with both
broken it ends with a tool error within the timeouts, and the local breaker opens.
"""

import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mcp_servers.cli import build_server
from mcp_servers.shared.config import LlmBackendSettings, StackSettings
from tests.support import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Mode = Literal["ok", "error", "garbage", "no_choices", "zeros", "wrong_dimension", "hang"]
DIMENSION = 384
LEAKS = ("Traceback", "httpx", "site-packages", "127.0.0.1")


@dataclass
class Scripted:
    """/v1/embeddings and /v1/chat/completions whose behaviour the test switches with `mode`."""

    name: str
    mode: Mode = "ok"
    requests: int = 0
    url: str = ""
    release: anyio.Event = field(default_factory=anyio.Event)

    async def _broken(self) -> Response | None:
        self.requests += 1
        if self.mode == "error":
            return JSONResponse({"error": {"message": "boom"}}, status_code=503)
        if self.mode == "garbage":
            return PlainTextResponse("<html>502 upstream \x00 garbage", status_code=200, media_type="application/json")
        if self.mode == "hang":
            await self.release.wait()
            return PlainTextResponse("late", status_code=500)
        return None

    async def embeddings(self, request: Request) -> Response:
        body = json.loads(await request.body())
        broken = await self._broken()
        if broken is not None:
            return broken
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for index, text in enumerate(texts):
            size = DIMENSION + 1 if self.mode == "wrong_dimension" else DIMENSION
            vector = [0.0] * size
            if self.mode != "zeros":
                for position, char in enumerate(str(text)[:200]):
                    vector[(ord(char) * 31 + position) % DIMENSION] += 1.0
                vector[0] += 1.0  # never all zero
                norm = math.sqrt(sum(v * v for v in vector))
                vector = [v / norm for v in vector]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return JSONResponse({"object": "list", "data": data, "model": "scripted"})

    async def chat(self, request: Request) -> Response:
        await request.body()
        broken = await self._broken()
        if broken is not None:
            return broken
        if self.mode == "no_choices":
            return JSONResponse({"id": "x", "object": "chat.completion", "choices": []})
        return JSONResponse(
            {
                "id": "x",
                "model": self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": f"from {self.name}"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
            }
        )


@contextlib.asynccontextmanager
async def scripted(name: str) -> AsyncIterator[Scripted]:
    server = Scripted(name)
    app = Starlette(
        routes=[
            Route("/v1/embeddings", server.embeddings, methods=["POST"]),
            Route("/v1/chat/completions", server.chat, methods=["POST"]),
        ]
    )
    async with serve_app(app) as url:
        server.url = f"{url}/v1"
        try:
            yield server
        finally:
            server.release.set()


def text_of(result: Any) -> str:
    return " ".join(str(getattr(block, "text", "")) for block in result.content)


def crashes(server: Any) -> list[str]:
    return [
        line
        for line in server.core.metrics.render().decode().splitlines()
        if line.startswith("mcpstack_tool_calls_total{") and 'outcome="crash"' in line and not line.endswith(" 0.0")
    ]


async def document_count(client: Client) -> int:
    result = await client.call_tool("list_documents", {"limit": 100})
    assert not result.is_error, result
    return len((result.structured_content or {})["documents"])


async def test_embedder_failures_are_clear_errors_and_store_nothing(
    stack_settings: StackSettings, tmp_path: Path
) -> None:
    async with scripted("embedder") as endpoint:
        settings = stack_settings.model_copy(
            update={
                "data_dir": tmp_path / "aidb",
                "embedder": stack_settings.embedder.model_copy(
                    update={"backend": "openai", "url": endpoint.url, "model": "scripted", "timeout_seconds": 1.0}
                ),
                "breaker": stack_settings.breaker.model_copy(update={"failure_threshold": 3, "open_seconds": 0.5}),
                "rate_limit": stack_settings.rate_limit.model_copy(update={"enabled": False}),
                "aidb": stack_settings.aidb.model_copy(update={"cache_ttl_seconds": 0}),
            }
        )
        server = build_server("aidb", settings)
        async with Client(server.mcp) as client:
            stored = await client.call_tool("store_document", {"content": "healthy embedder text", "title": "ok"})
            assert not stored.is_error, stored
            baseline = await document_count(client)
            for mode in ("garbage", "zeros", "wrong_dimension", "hang", "error"):
                endpoint.mode = mode
                began = time.perf_counter()
                with anyio.fail_after(30):
                    if mode == "wrong_dimension":
                        # A model of another dimension is the operator's to fix: a JSON-RPC error the host sees.
                        with pytest.raises(MCPError) as refused_by_config:
                            await client.call_tool(
                                "store_document", {"content": f"text while the embedder is {mode}", "title": mode}
                            )
                        assert refused_by_config.value.error.code == INTERNAL_ERROR
                        message = refused_by_config.value.error.message
                    else:
                        result = await client.call_tool(
                            "store_document", {"content": f"text while the embedder is {mode}", "title": mode}
                        )
                        message = text_of(result)
                        assert result.is_error, (mode, result)
                assert "embed" in message.lower(), (mode, message)
                assert not any(leak in message for leak in LEAKS), (mode, message)
                assert time.perf_counter() - began < 20, mode
                assert await document_count(client) == baseline, f"{mode}: a document was stored without vectors"
            # 5xx counts for the breaker: after the threshold, calls fail fast without reaching the endpoint.
            for _ in range(3):
                await client.call_tool("store_document", {"content": "more text", "title": "x"})
            assert server.core.breakers.snapshot()["embedder"] == "open"
            before = endpoint.requests
            refused = await client.call_tool("store_document", {"content": "refused at once", "title": "y"})
            assert refused.is_error and endpoint.requests == before
            endpoint.mode = "ok"
            with anyio.fail_after(20):
                while True:
                    recovered = await client.call_tool("store_document", {"content": "back again", "title": "z"})
                    if not recovered.is_error:
                        break
                    await anyio.sleep(0.2)
            searched = await client.call_tool("search", {"query": "back again", "limit": 3})
            assert not searched.is_error, searched
            ready, report = await server.readiness()
        assert ready, report
        assert not crashes(server)


def llm_settings(stack_settings: StackSettings, local: Scripted, remote: Scripted, tmp_path: Path) -> StackSettings:
    backends = [
        LlmBackendSettings(name="local", kind="local", base_url=local.url, model="l", timeout_seconds=0.5),
        LlmBackendSettings(
            name="remote",
            kind="remote",
            base_url=remote.url,
            model="r",
            api_key="k",
            timeout_seconds=0.5,
            cost_per_1k_tokens=0.001,
        ),
    ]
    return stack_settings.model_copy(
        update={
            "data_dir": tmp_path / "hybrid",
            "hybrid": stack_settings.hybrid.model_copy(update={"backends": backends, "pipeline_enabled": False}),
            "breaker": stack_settings.breaker.model_copy(update={"failure_threshold": 3, "open_seconds": 600}),
            "rate_limit": stack_settings.rate_limit.model_copy(update={"enabled": False}),
        }
    )


@pytest.mark.parametrize("mode", ["garbage", "no_choices", "hang", "error"])
async def test_llm_backend_that_hangs_or_answers_garbage_falls_back_then_fails_cleanly(
    mode: Mode, stack_settings: StackSettings, tmp_path: Path
) -> None:
    async with scripted("local") as local, scripted("remote") as remote:
        server = build_server("hybrid", llm_settings(stack_settings, local, remote, tmp_path))
        local.mode = mode
        async with Client(server.mcp) as client:
            with anyio.fail_after(20):
                fallback = await client.call_tool("route_query", {"prompt": "hello there"})
            assert not fallback.is_error, fallback
            assert (fallback.structured_content or {})["backend"] == "remote"
            remote.mode = mode
            for _ in range(3):
                began = time.perf_counter()
                with anyio.fail_after(20):
                    failed = await client.call_tool("route_query", {"prompt": "hello again"})
                assert failed.is_error, failed
                assert not any(leak in text_of(failed) for leak in LEAKS), text_of(failed)
                assert time.perf_counter() - began < 10
            snapshot = server.core.breakers.snapshot()
        if mode in ("hang", "error"):  # transport failures and 5xx count for the breaker
            assert snapshot["llm:local"] == "open", snapshot
        assert not crashes(server)
