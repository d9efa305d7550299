"""Why a request's credential was refused: noted where it is decided, counted once per HTTP request.

The verifier and the route guards call `note_auth_failure(reason)`; the HTTP middleware that opened
`auth_outcome()` for the request reads the last reason when the response is a 401 (or a scope 403) and
increments `mcpstack_auth_failures_total{reason=...}` once, whichever layer refused the request.
"""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, get_args

AuthFailureReason = Literal["missing", "invalid", "revoked", "too_long", "unavailable", "insufficient_scope"]
AUTH_FAILURE_REASONS: tuple[AuthFailureReason, ...] = get_args(AuthFailureReason)


@dataclass(slots=True)
class AuthOutcome:
    """The last refusal reason noted while one HTTP request was being authenticated (None: nothing refused)."""

    reason: AuthFailureReason | None = None


_current: ContextVar[AuthOutcome | None] = ContextVar("auth_outcome", default=None)


def note_auth_failure(reason: AuthFailureReason) -> None:
    """Record why the current request's credential was refused (no-op outside `auth_outcome()`)."""
    outcome = _current.get()
    if outcome is not None:
        outcome.reason = reason


@contextlib.contextmanager
def auth_outcome() -> Iterator[AuthOutcome]:
    """Collect the refusal reasons noted while this block (one HTTP request) runs."""
    outcome = AuthOutcome()
    token = _current.set(outcome)
    try:
        yield outcome
    finally:
        _current.reset(token)
