"""The harness over real transports: in-process, Streamable HTTP in both eras, auth, scopes, limits, metrics."""

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client, MCPError
from mcp_types import INVALID_PARAMS
from pydantic import BaseModel, Field

from mcp_servers.shared.annotations import READ_ONLY, WRITE
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import AuthSettings, StackSettings
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest, NotFound
from mcp_servers.shared.harness import Core, ReadinessCheck, StackServer, build_core
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED, RATE_LIMITED
from mcp_servers.shared.postgres.pool import Database, open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.support import bind_loopback, http_client, serve_app, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ERAS = ["legacy", "2026-07-28"]


class EchoResult(BaseModel):
    text: str
    length: int


@dataclass(frozen=True)
class EchoDeps:
    database: Database

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        return {}


@contextlib.asynccontextmanager
async def open_echo(core: Core, database: Database) -> AsyncIterator[EchoDeps]:
    yield EchoDeps(database)


def build_echo_server(settings: StackSettings) -> StackServer[EchoDeps]:
    server = StackServer(build_core("aidb", settings), instructions="test server", open_deps=open_echo)

    @server.tool("echo", annotations=READ_ONLY)
    async def echo(
        text: Annotated[str, Field(description="text to echo", max_length=100)],
        repeat: Annotated[int, Field(description="times", ge=1, le=5, strict=True)] = 1,
    ) -> EchoResult:
        """Echo text back."""
        return EchoResult(text=text * repeat, length=len(text) * repeat)

    @server.tool("remember", annotations=WRITE)
    async def remember(key: Annotated[str, Field(max_length=50)]) -> EchoResult:
        """A write tool that fails with a domain error for the unknown key 'missing'."""
        if key == "missing":
            raise NotFound("no entry named 'missing'; call list first")
        return EchoResult(text=key, length=len(key))

    @server.prompt("greet", description="Greet someone by name")
    async def greet(name: str) -> str:
        if not name.strip():
            raise InvalidRequest("name must not be blank; pass the person's name")
        return f"Hello {name}"

    return server


async def issue_key(settings: StackSettings, scopes: list[str]) -> tuple[str, str]:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        issued = await KeyStore(database).create("test", scopes)
    return issued.key.key_id, issued.token


async def test_in_process_call_returns_structured_result(stack_settings: StackSettings) -> None:
    async with Client(build_echo_server(stack_settings).mcp) as client:
        result = await client.call_tool("echo", {"text": "ab", "repeat": 2})
    assert not result.is_error
    assert result.structured_content == {"text": "abab", "length": 4}


async def test_unknown_tool_and_prompt_are_invalid_params(stack_settings: StackSettings) -> None:
    async with Client(build_echo_server(stack_settings).mcp) as client:
        with pytest.raises(MCPError) as tool_error:
            await client.call_tool("no_such_tool", {})
        with pytest.raises(MCPError) as prompt_error:
            await client.get_prompt("no_such_prompt", {})
        assert (await client.get_prompt("greet", {"name": "x"})).messages
    assert tool_error.value.code == INVALID_PARAMS
    assert prompt_error.value.code == INVALID_PARAMS


async def test_an_argument_the_tool_does_not_declare_is_invalid_params(stack_settings: StackSettings) -> None:
    async with Client(build_echo_server(stack_settings).mcp) as client:
        with pytest.raises(MCPError) as misspelt:
            await client.call_tool("echo", {"text": "ab", "repaet": 2})
        # Declared optional arguments may still be left out.
        assert not (await client.call_tool("echo", {"text": "ab"})).is_error
    assert misspelt.value.code == INVALID_PARAMS
    assert "'repaet'" in misspelt.value.message


async def test_domain_error_in_a_prompt_is_a_json_rpc_error_with_its_message(stack_settings: StackSettings) -> None:
    async with Client(build_echo_server(stack_settings).mcp) as client:
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("greet", {"name": " "})
    assert refused.value.code == INVALID_PARAMS
    assert refused.value.message == "name must not be blank; pass the person's name"


@pytest.mark.parametrize(
    ("arguments", "field", "error_type"),
    [
        ({"text": "x" * 101}, "text", "string_too_long"),
        ({"text": "x", "repeat": 6}, "repeat", "less_than_equal"),
        ({"text": "x", "repeat": "2"}, "repeat", "int_type"),  # strict: no string-to-int coercion
        ({}, "text", "missing"),
    ],
)
async def test_bad_arguments_get_a_validation_error_naming_the_field(
    stack_settings: StackSettings, arguments: dict[str, Any], field: str, error_type: str
) -> None:
    async with Client(build_echo_server(stack_settings).mcp) as client:
        result = await client.call_tool("echo", arguments)
    assert result.is_error
    message = result.content[0].text  # type: ignore[union-attr]
    # One pydantic error: the field on its own line, then the error's type code.
    assert "1 validation error" in message
    assert f"\n{field}\n" in message
    assert f"[type={error_type}," in message
    assert "Traceback" not in message


async def test_domain_error_reaches_the_model_as_tool_error(stack_settings: StackSettings) -> None:
    async with Client(build_echo_server(stack_settings).mcp) as client:
        result = await client.call_tool("remember", {"key": "missing"})
    assert result.is_error
    assert result.content[0].text.endswith("no entry named 'missing'; call list first")  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ERAS)
async def test_http_requires_a_valid_key_in_both_eras(stack_settings: StackSettings, mode: str) -> None:
    _, token = await issue_key(stack_settings, ["write"])
    sock = bind_loopback()
    settings = stack_settings.model_copy(
        update={"http": stack_settings.http.model_copy(update={"aidb_port": sock.getsockname()[1]})}
    )
    server = build_echo_server(settings)
    async with serve_app(server.http_app(), sock) as url:
        async with httpx.AsyncClient() as raw:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
            headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
            missing = await raw.post(f"{url}/mcp", json=body, headers=headers)
            wrong = await raw.post(f"{url}/mcp", json=body, headers={**headers, "Authorization": "Bearer mcps_x_y"})
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert "resource_metadata=" in missing.headers["www-authenticate"]
            assert wrong.status_code == 401
            assert (await raw.get(f"{url}/.well-known/oauth-protected-resource/mcp")).status_code == 200
        async with http_client(url, token, mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("echo", {"text": "hi"})
        assert tools == {"echo", "remember"}
        assert result.structured_content == {"text": "hi", "length": 2}


@pytest.mark.parametrize("mode", ERAS)
async def test_read_scope_cannot_call_a_write_tool(stack_settings: StackSettings, mode: str) -> None:
    _, token = await issue_key(stack_settings, ["read"])
    server = build_echo_server(stack_settings)
    async with serve_app(server.http_app()) as url, http_client(url, token, mode=mode) as client:
        assert not (await client.call_tool("echo", {"text": "ok"})).is_error
        with pytest.raises(MCPError) as refused:
            await client.call_tool("remember", {"key": "k"})
    assert refused.value.code == PERMISSION_DENIED


async def test_revoked_key_is_refused(stack_settings: StackSettings) -> None:
    key_id, token = await issue_key(stack_settings, ["read"])
    server = build_echo_server(stack_settings)
    async with serve_app(server.http_app()) as url:
        async with http_client(url, token) as client:
            assert not (await client.call_tool("echo", {"text": "ok"})).is_error
        async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
            await KeyStore(database).revoke(key_id)

        async def refused() -> bool:
            async with httpx.AsyncClient() as raw:
                response = await raw.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
            return response.status_code == 401

        await wait_until(refused, timeout=10)


async def test_rate_limit_refuses_the_call_after_the_burst_with_retry_info(stack_settings: StackSettings) -> None:
    settings = stack_settings.model_copy(
        update={"rate_limit": stack_settings.rate_limit.model_copy(update={"calls_per_minute": 1.0, "burst": 3})}
    )
    async with Client(build_echo_server(settings).mcp) as client:
        for _ in range(3):
            assert not (await client.call_tool("echo", {"text": "x"})).is_error
        with pytest.raises(MCPError) as limited:
            await client.call_tool("echo", {"text": "x"})
    assert limited.value.code == RATE_LIMITED
    assert limited.value.data["retry_after_seconds"] > 0


async def test_health_is_open_ready_and_metrics_need_a_key(stack_settings: StackSettings) -> None:
    _, token = await issue_key(stack_settings, ["read"])
    server = build_echo_server(stack_settings)
    async with serve_app(server.http_app()) as url, httpx.AsyncClient() as raw:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await raw.get(f"{url}/health")).json()["status"] == "ok"
        assert (await raw.get(f"{url}/ready")).status_code == 401
        assert (await raw.get(f"{url}/metrics")).status_code == 401
        two_headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
        assert (await raw.get(f"{url}/metrics", headers=two_headers)).status_code == 401
        ready = await raw.get(f"{url}/ready", headers=auth)
        async with http_client(url, token) as client:
            await client.call_tool("echo", {"text": "x"})
        metrics = (await raw.get(f"{url}/metrics", headers=auth)).text
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok"}
    assert 'mcpstack_tool_calls_total{outcome="ok",server="aidb",tool="echo"} 1.0' in metrics
    assert "mcpstack_tool_call_duration_seconds_bucket" in metrics


async def test_dependencies_open_once_for_many_connections(stack_settings: StackSettings) -> None:
    server = build_echo_server(stack_settings)
    async with Client(server.mcp) as first, Client(server.mcp) as second:
        database = server.database
        await first.call_tool("echo", {"text": "a"})
        await second.call_tool("echo", {"text": "b"})
        assert server.database is database
    with pytest.raises(DependencyUnavailable) as closed:  # the last user left: the database is closed
        _ = server.database
    assert closed.value.dependency == "postgres"
    await anyio.lowlevel.checkpoint()


async def test_http_route_over_its_rate_limit_answers_429_with_retry_after(stack_settings: StackSettings) -> None:
    _, token = await issue_key(stack_settings, ["read"])
    settings = stack_settings.model_copy(
        update={"rate_limit": stack_settings.rate_limit.model_copy(update={"calls_per_minute": 1.0, "burst": 2})}
    )
    async with serve_app(build_echo_server(settings).http_app()) as url, httpx.AsyncClient() as raw:
        auth = {"Authorization": f"Bearer {token}"}
        statuses = [(await raw.get(f"{url}/metrics", headers=auth)).status_code for _ in range(2)]
        limited = await raw.get(f"{url}/metrics", headers=auth)
    assert statuses == [200, 200]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


def _jwt(private_key: Any, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": "https://issuer.test", "sub": "user-1", "aud": "mcp-stack", "exp": now + 300, "scope": "read"}
    return jwt.encode(payload | claims, private_key, algorithm="RS256")


async def test_oauth_jwt_from_the_configured_issuer_is_accepted(stack_settings: StackSettings) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = stack_settings.model_copy(
        update={
            "auth": AuthSettings(
                jwt_issuer="https://issuer.test", jwt_audience="mcp-stack", jwt_public_key=public_pem.decode()
            )
        }
    )
    async with serve_app(build_echo_server(settings).http_app()) as url:
        async with http_client(url, _jwt(private_key)) as client:
            assert not (await client.call_tool("echo", {"text": "jwt"})).is_error
            with pytest.raises(MCPError) as refused:
                await client.call_tool("remember", {"key": "k"})
        assert refused.value.code == PERMISSION_DENIED
        async with httpx.AsyncClient() as raw:
            for bad in (
                _jwt(private_key, iss="https://evil.test"),
                _jwt(private_key, exp=int(time.time()) - 10),
                _jwt(private_key, aud="someone-else"),
                _jwt(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            ):
                response = await raw.get(f"{url}/metrics", headers={"Authorization": f"Bearer {bad}"})
                assert response.status_code == 401
