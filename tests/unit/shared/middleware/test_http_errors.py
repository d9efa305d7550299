"""Domain errors map to HTTP statuses with Retry-After where a retry helps."""

from mcp_servers.shared.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    PeerToolError,
    RateLimited,
    retry_after_whole_seconds,
)
from mcp_servers.shared.middleware.http import error_response


def test_statuses() -> None:
    assert error_response(NotFound("x")).status_code == 404
    assert error_response(Conflict("x")).status_code == 409
    assert error_response(InvalidRequest("x")).status_code == 400


def test_rate_limited_is_429_with_retry_after_rounded_up() -> None:
    response = error_response(RateLimited(retry_after_seconds=1.2, limit_key="k"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"


def test_dependency_unavailable_is_503_with_retry_after() -> None:
    response = error_response(DependencyUnavailable("postgres", retry_after_seconds=3))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"


def test_a_peer_tool_error_is_400_with_the_peers_text() -> None:
    response = error_response(PeerToolError("ralph", "stop_task", "task t1 is finished; it cannot be stopped"))
    assert response.status_code == 400
    assert b"task t1 is finished" in response.body


def test_every_wait_rounds_up_to_whole_seconds_and_never_below_one() -> None:
    assert [retry_after_whole_seconds(s) for s in (0.0, 0.2, 1.0, 2.0005, 2.6)] == [1, 1, 1, 3, 3]
    assert str(RateLimited(retry_after_seconds=2.0005, limit_key="k")).endswith("retry in 3 s")
    assert str(DependencyUnavailable("qdrant", retry_after_seconds=1.4)).endswith("retry in 2 s")
    assert error_response(DependencyUnavailable("qdrant", retry_after_seconds=2.0005)).headers["retry-after"] == "3"
