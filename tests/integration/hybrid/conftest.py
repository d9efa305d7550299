"""Hybrid fixtures: scripted OpenAI-compatible LLM servers on 127.0.0.1 and settings that route to them."""

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_servers.shared.config import HybridSettings, LlmBackendSettings, StackSettings
from tests.support import serve_app

Mode = Literal["ok", "error", "hang", "no_usage", "json"]


@dataclass
class ScriptedLlm:
    """An OpenAI-compatible /v1/chat/completions server whose behaviour the test sets with `mode`."""

    name: str
    mode: Mode = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    release: anyio.Event = field(default_factory=anyio.Event)

    def prompts(self) -> list[str]:
        """Every message content this server has received."""
        return [m["content"] for body in self.requests for m in body.get("messages", [])]

    async def handle(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append(body)
        if self.mode == "error":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if self.mode == "hang":
            await self.release.wait()  # answered only when the test ends; the client times out first
            return JSONResponse({"error": "late"}, status_code=500)
        text = f"answer from {self.name}"
        if body.get("response_format"):
            text = json.dumps({"answer": self.name, "confidence": 0.5})
        answer: dict[str, Any] = {
            "id": "x",
            "model": f"{self.name}-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if self.mode != "no_usage":
            answer["usage"] = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
        return JSONResponse(answer)


@contextlib.asynccontextmanager
async def scripted_llm(name: str) -> AsyncIterator[ScriptedLlm]:
    llm = ScriptedLlm(name)
    app = Starlette(routes=[Route("/v1/chat/completions", llm.handle, methods=["POST"])])
    async with serve_app(app) as url:
        llm.url = f"{url}/v1"
        try:
            yield llm
        finally:
            llm.release.set()


@pytest.fixture
async def local_llm() -> AsyncIterator[ScriptedLlm]:
    async with scripted_llm("local") as llm:
        yield llm


@pytest.fixture
async def remote_llm() -> AsyncIterator[ScriptedLlm]:
    async with scripted_llm("remote") as llm:
        yield llm


SettingsFactory = Callable[..., StackSettings]


@pytest.fixture
def hybrid_settings(stack_settings: StackSettings, local_llm: ScriptedLlm, remote_llm: ScriptedLlm) -> SettingsFactory:
    """Build settings routing to the two scripted servers; keyword overrides go to HybridSettings / backends."""

    def build(
        *,
        local: dict[str, Any] | None = None,
        remote: dict[str, Any] | None = None,
        breaker_threshold: int = 5,
        **hybrid: Any,
    ) -> StackSettings:
        backends = [
            LlmBackendSettings(
                **{
                    "name": "local",
                    "kind": "local",
                    "base_url": local_llm.url,
                    "model": "local-model",
                    "context_window_tokens": 4096,
                    "timeout_seconds": 5.0,
                    **(local or {}),
                }
            ),
            LlmBackendSettings(
                **{
                    "name": "remote",
                    "kind": "remote",
                    "base_url": remote_llm.url,
                    "model": "remote-model",
                    "api_key": "remote-key",
                    "context_window_tokens": 100_000,
                    "cost_per_1k_tokens": 0.01,
                    "timeout_seconds": 5.0,
                    **(remote or {}),
                }
            ),
        ]
        section = HybridSettings(**{"backends": backends, "pipeline_enabled": False, **hybrid})
        breaker = stack_settings.breaker.model_copy(
            update={"failure_threshold": breaker_threshold, "open_seconds": 600}
        )
        return stack_settings.model_copy(update={"hybrid": section, "breaker": breaker})

    return build
