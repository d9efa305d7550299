"""A small loopback round-robin HTTP proxy for scale-out tests: each request goes to the next upstream in turn.

Streams request and response bodies (Streamable HTTP answers may be SSE). Stateless MCP (the 2026-07-28 era)
needs no stickiness; a legacy session would, which is why the scale-out tests use the stateless era.
"""

import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support import serve_app

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection", "host"}


@dataclass
class RoundRobin:
    """Upstream base URLs and how many requests each received."""

    upstreams: list[str]
    served: Counter[str] = field(default_factory=Counter)
    url: str = ""


@contextlib.asynccontextmanager
async def round_robin_proxy(upstreams: list[str]) -> AsyncIterator[RoundRobin]:
    """Serve the proxy on 127.0.0.1 for the block; yields its state (`url`, per-upstream counts)."""
    state = RoundRobin(list(upstreams))
    turn = itertools.cycle(state.upstreams)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), follow_redirects=False) as client:

        async def forward(request: Request) -> Response:
            upstream = next(turn)
            state.served[upstream] += 1
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
            outbound = client.build_request(
                request.method,
                upstream + request.url.path + (f"?{request.url.query}" if request.url.query else ""),
                headers=headers,
                content=await request.body(),
            )
            answer = await client.send(outbound, stream=True)
            return StreamingResponse(
                answer.aiter_raw(),
                status_code=answer.status_code,
                headers={k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"content-length"}},
                background=BackgroundTask(answer.aclose),
            )

        methods = ["GET", "POST", "DELETE", "PUT", "OPTIONS"]
        app = Starlette(routes=[Route("/{path:path}", forward, methods=methods)])
        async with serve_app(app) as url:
            state.url = url
            yield state
