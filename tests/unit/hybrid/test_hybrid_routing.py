"""Routing policy as plain functions: secrets, context overflow, complexity, preferences, budget, adaptation."""

import pytest

from mcp_servers.hybrid.routing import (
    RouteRequest,
    adapt_threshold,
    charged_cost,
    classify_task,
    detect_secret,
    estimate_complexity,
    estimate_tokens,
    plan_route,
)
from mcp_servers.shared.config import LlmBackendSettings

LOCAL = LlmBackendSettings(name="local", kind="local", base_url="http://l/v1", model="m", context_window_tokens=1000)
REMOTE = LlmBackendSettings(
    name="remote",
    kind="remote",
    base_url="http://r/v1",
    model="m",
    context_window_tokens=100_000,
    cost_per_1k_tokens=1.0,
)
BACKENDS = [LOCAL, REMOTE]


def request(**overrides: object) -> RouteRequest:
    values: dict[str, object] = {
        "prompt_tokens": 100,
        "max_tokens": 100,
        "prefer": "auto",
        "task_type": "general",
        "complexity": 0.1,
        "secret": False,
    }
    values.update(overrides)
    return RouteRequest(**values)  # type: ignore[arg-type]  # test builder


def plan(req: RouteRequest, *, budget: float | None = 100.0, open_: dict[str, bool] | None = None, allow: bool = False):  # type: ignore[no-untyped-def]
    return plan_route(
        req, BACKENDS, threshold=0.6, allow_secrets_remote=allow, budget_left=budget, breaker_open=open_ or {}
    )


def test_simple_prompt_goes_local_first_with_remote_fallback() -> None:
    result = plan(request())
    assert result.candidates == ("local", "remote") and result.reason == "local_first"


def test_prompt_larger_than_local_context_goes_remote() -> None:
    result = plan(request(prompt_tokens=950))
    assert result.candidates == ("remote",) and result.reason == "context_overflow"


def test_complex_prompt_escalates_to_remote_first() -> None:
    result = plan(request(complexity=0.9))
    assert result.candidates == ("remote", "local") and result.reason == "complexity_over_threshold"


def test_secret_never_planned_for_remote() -> None:
    for req in (request(secret=True, complexity=0.9), request(secret=True, prefer="remote")):
        result = plan(req)
        assert "remote" not in result.candidates
    assert plan(request(secret=True, prefer="remote")).reason == "secret_kept_local"
    assert plan(request(secret=True, prompt_tokens=950)).candidates == ()


def test_secret_may_go_remote_when_configured() -> None:
    assert "remote" in plan(request(secret=True, prefer="remote"), allow=True).candidates


def test_forced_preferences() -> None:
    assert plan(request(prefer="local")).candidates == ("local",)
    assert plan(request(prefer="remote")).candidates == ("remote", "local")


def test_open_breaker_skips_local() -> None:
    result = plan(request(), open_={"local": True})
    assert result.candidates == ("remote",) and result.reason == "local_unavailable"
    assert [(skip.backend, skip.reason) for skip in result.skipped] == [("local", "breaker_open")]


def test_budget_exhausted_skips_costed_backend() -> None:
    result = plan(request(complexity=0.9), budget=0.01)
    assert result.candidates == ("local",)
    assert ("remote", "budget_exhausted") in [(skip.backend, skip.reason) for skip in result.skipped]


def test_missing_usage_is_charged_the_worst_case() -> None:
    cost, reported = charged_cost(REMOTE, None, 5, estimated_prompt_tokens=1000, max_tokens=1000)
    assert not reported and cost == pytest.approx(2.0)
    cost, reported = charged_cost(REMOTE, 100, 50, estimated_prompt_tokens=1000, max_tokens=1000)
    assert reported and cost == pytest.approx(0.15)


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
        "my key is AKIAIOSFODNN7EXAMPLE ok",
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "api_key = 'abcd1234efgh5678'",
        "postgresql://user:hunter2@db/prod",
        "OPENAI sk-proj-abcdefghijklmnopqrstuvwx",
    ],
)
def test_secret_detectors_match(text: str) -> None:
    assert detect_secret(text) is not None


def test_ordinary_text_is_not_secret() -> None:
    assert detect_secret("How do I sort a list in Python? Use sorted(items, key=len).") is None


def test_complexity_and_task_type_estimates() -> None:
    simple = estimate_complexity("What is 2+2?")
    hard = estimate_complexity(
        "Design a distributed architecture and analyze the trade-offs step by step. Compare two strategies, "
        "prove why one scales, and plan the migration:\n1. data\n2. traffic\n3. rollback\n" * 5
    )
    assert 0 <= simple < 0.3 < 0.6 < hard <= 1
    assert classify_task("Fix this traceback:\n```python\ndef f(): return 1\n```") == "code"
    assert classify_task("anything", wants_json=True) == "extraction"
    assert classify_task("Why is the sky blue? explain how") == "reasoning"
    assert estimate_tokens("") == 0 and estimate_tokens("a" * 40) == 10


def test_threshold_adapts_within_bounds() -> None:
    args = {"complexity": 0.5, "step": 0.1, "low": 0.3, "high": 0.9}
    assert adapt_threshold(0.6, routed_kind="local", outcome="failure", **args) == pytest.approx(0.5)
    assert adapt_threshold(0.6, routed_kind="local", outcome="success", **args) == pytest.approx(0.65)
    assert adapt_threshold(0.3, routed_kind="local", outcome="failure", **args) == pytest.approx(0.3)
    assert adapt_threshold(0.9, routed_kind="local", outcome="success", **args) == pytest.approx(0.9)
