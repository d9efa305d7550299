"""Pure pieces of the dashboard: metric parsing, the login redirect target, origin checks, password hashing."""

import pytest
from starlette.requests import Request

from mcp_servers.dashboard.auth import Passwords, same_origin
from mcp_servers.dashboard.pages.auth import safe_next
from mcp_servers.dashboard.sampler import parse_counters
from mcp_servers.dashboard.servers import user_budget
from mcp_servers.shared.config import load_settings

EXPOSITION = """\
# HELP mcpstack_tool_calls_total Tool calls.
# TYPE mcpstack_tool_calls_total counter
mcpstack_tool_calls_total{server="ralph",tool="list_tasks",outcome="ok"} 7.0
mcpstack_tool_calls_total{server="ralph",tool="stop_task",outcome="tool_error"} 2.0
mcpstack_tool_calls_total{server="ralph",tool="list_tasks",outcome="protocol_error"} 1.0
# HELP mcpstack_tool_call_duration_seconds Duration.
# TYPE mcpstack_tool_call_duration_seconds histogram
mcpstack_tool_call_duration_seconds_bucket{server="ralph",tool="list_tasks",le="+Inf"} 8.0
mcpstack_tool_call_duration_seconds_sum{server="ralph",tool="list_tasks"} 0.4
mcpstack_tool_call_duration_seconds_count{server="ralph",tool="list_tasks"} 8.0
# HELP mcpstack_rate_limit_rejections_total Refusals.
# TYPE mcpstack_rate_limit_rejections_total counter
mcpstack_rate_limit_rejections_total{server="ralph",tool="list_tasks"} 3.0
"""


def test_parse_counters_sums_calls_errors_latency_and_rejections() -> None:
    counters = parse_counters(EXPOSITION)
    assert counters.calls == 10 and counters.errors == 3 and counters.rate_limited == 3
    assert counters.duration_sum == pytest.approx(0.4) and counters.duration_count == 8


def _request(path: str, headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    path_part, _, query = path.partition("?")
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("127.0.0.1", 8800),
        "path": path_part,
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8800"), *raw],
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/tasks", "/tasks"), ("//evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example", "/")],
)
def test_login_returns_only_to_local_paths(target: str, expected: str) -> None:
    assert safe_next(_request("/login"), target) == expected


def test_same_origin_compares_origin_then_referer() -> None:
    assert same_origin(_request("/config", {"Origin": "http://127.0.0.1:8800"}))
    assert not same_origin(_request("/config", {"Origin": "http://evil.example"}))
    assert not same_origin(_request("/config", {"Referer": "http://127.0.0.1:9999/x"}))
    assert same_origin(_request("/config", {"Referer": "http://127.0.0.1:8800/config"}))


@pytest.mark.anyio
async def test_passwords_hash_with_argon2id_and_refuse_wrong_or_unknown() -> None:
    passwords = Passwords()
    hashed = await passwords.hash("s3cret-pass")
    assert hashed.startswith("$argon2id$")
    assert await passwords.verify(hashed, "s3cret-pass")
    assert not await passwords.verify(hashed, "wrong")
    assert not await passwords.verify(None, "s3cret-pass")
    assert not await passwords.verify("not a hash", "s3cret-pass")


def test_a_users_budget_is_at_most_half_the_service_keys() -> None:
    settings = load_settings(
        rate_limit={"calls_per_minute": 100, "burst": 10},
        dashboard={"user_calls_per_minute": 1000, "user_burst": 50},
    )
    budget = user_budget(settings)
    assert (budget.calls_per_minute, budget.burst) == (50, 5)
    own = load_settings(dashboard={"user_calls_per_minute": 30, "user_burst": 4})
    assert (user_budget(own).calls_per_minute, user_budget(own).burst) == (30, 4)
