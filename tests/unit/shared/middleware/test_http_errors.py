"""Domain errors map to HTTP statuses with Retry-After where a retry helps."""

from mcp_servers.shared.errors import Conflict, DependencyUnavailable, InvalidRequest, NotFound, RateLimited
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
