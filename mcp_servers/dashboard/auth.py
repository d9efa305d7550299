"""Operator authentication: argon2 password hashes, signed server-side sessions, CSRF and origin checks, login limits.

The session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` on https requests or when `dashboard.secure_cookies`
says so) holds a random id signed with
itsdangerous and timestamped; the id's SHA-256 names a row in `dashboard_sessions`, so logout and expiry revoke it
on the server too. Every state-changing request must carry the session's CSRF token (form field `csrf_token` or
header `X-CSRF-Token`) and, when the browser sends one, an `Origin` (or `Referer`) of the dashboard itself. The
login form has its own pre-session token (a signed cookie plus the same value in the form).

Login attempts are limited per client address (as the forwarded headers of a trusted proxy name it, else the
peer) and per (address, username), never per username alone: a limit that anyone may spend for a username would
let a stranger lock its owner out. One address gets `ADDRESS_USERNAMES` times the per-username budget in total.
"""

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mcp_servers.dashboard.store import DashboardStore, Role, Session
from mcp_servers.shared.config import DashboardSettings, RateLimitSettings
from mcp_servers.shared.errors import PermissionDenied
from mcp_servers.shared.resilience.ratelimit import MemoryRateLimiter

SESSION_COOKIE: Final = "mcpdash_session"
LOGIN_COOKIE: Final = "mcpdash_login"
CSRF_HEADER: Final = "x-csrf-token"
CSRF_FIELD: Final = "csrf_token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_LOGIN_TOKEN_MAX_AGE_SECONDS: Final = 3600
# How many usernames' worth of attempts one address gets in total (several operators behind one address).
ADDRESS_USERNAMES: Final = 4
# argon2 takes tens of milliseconds of CPU on purpose: at most two at once on two cores.
_HASH_LIMITER = anyio.CapacityLimiter(2)

Endpoint = Callable[[Request], Awaitable[Response]]
SessionEndpoint = Callable[[Request, Session], Awaitable[Response]]


class Passwords:
    """argon2id hashing and verification off the event loop."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        # Verified when a username is unknown, so that a wrong name costs as long as a wrong password.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        """The argon2id hash of a password."""
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=_HASH_LIMITER)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether the password matches; an unknown user (None) still costs one verification."""

        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._dummy, password) and password_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await anyio.to_thread.run_sync(check, limiter=_HASH_LIMITER)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with older parameters."""
        return self._hasher.check_needs_rehash(password_hash)


@dataclass
class Authenticator:
    """Issues, reads and revokes sessions; checks CSRF and origins; limits login attempts."""

    store: DashboardStore
    settings: DashboardSettings
    passwords: Passwords

    def __post_init__(self) -> None:
        secret = self.settings.session_secret
        key = secret.get_secret_value() if secret is not None else secrets.token_urlsafe(32)
        self._sessions = URLSafeTimedSerializer(key, salt="mcpdash-session")
        self._login_tokens = URLSafeTimedSerializer(key, salt="mcpdash-login")
        rate, burst = self.settings.login_attempts_per_minute, self.settings.login_burst
        self._per_pair = MemoryRateLimiter(RateLimitSettings(calls_per_minute=rate, burst=burst))
        self._per_address = MemoryRateLimiter(
            RateLimitSettings(calls_per_minute=rate * ADDRESS_USERNAMES, burst=burst * ADDRESS_USERNAMES)
        )

    # -- login ------------------------------------------------------------------------------------------------

    def login_token(self, request: Request) -> tuple[str, str | None]:
        """The login form's token and, when a new one was made, the signed cookie value to set."""
        cookie = request.cookies.get(LOGIN_COOKIE)
        if cookie:
            try:
                return str(self._login_tokens.loads(cookie, max_age=_LOGIN_TOKEN_MAX_AGE_SECONDS)), None
            except BadSignature:
                pass
        token = secrets.token_urlsafe(32)
        return token, self._login_tokens.dumps(token)

    def check_login_token(self, request: Request, submitted: str) -> bool:
        """The form's token equals the one signed into the login cookie."""
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        try:
            expected = str(self._login_tokens.loads(cookie, max_age=_LOGIN_TOKEN_MAX_AGE_SECONDS))
        except BadSignature:
            return False
        return hmac.compare_digest(expected.encode(), submitted.encode())

    def admit_login_attempt(self, client: str, username: str) -> None:
        """Count one attempt for the client address and for (address, username); raises RateLimited."""
        self._per_address.check(client)
        self._per_pair.check(f"{client} {username.lower()}")

    async def login(self, username: str, password: str) -> str | None:
        """Check the credentials; on success store a session and return the cookie value."""
        user = await self.store.user(username)
        if not await self.passwords.verify(user.password_hash if user else None, password) or user is None:
            return None
        if self.passwords.needs_rehash(user.password_hash):
            await self.store.set_password_hash(user.username, await self.passwords.hash(password))
        session_id = secrets.token_urlsafe(32)
        await self.store.create_session(
            session_id, user.username, secrets.token_urlsafe(32), self.settings.session_max_age_seconds
        )
        return self._sessions.dumps(session_id)

    async def logout(self, request: Request) -> None:
        """Revoke the request's session server-side."""
        session_id = self._session_id(request)
        if session_id is not None:
            await self.store.revoke_session(session_id)

    def secure(self, request: Request) -> bool:
        """Whether cookies must be `Secure`: an https request (direct, or as a trusted proxy says) or the setting."""
        return self.settings.secure_cookies or request.url.scheme == "https"

    def set_session_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=self.settings.session_max_age_seconds,
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
            path="/",
        )

    def set_login_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            LOGIN_COOKIE,
            value,
            max_age=_LOGIN_TOKEN_MAX_AGE_SECONDS,
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
            path="/login",
        )

    # -- requests ---------------------------------------------------------------------------------------------

    def _session_id(self, request: Request) -> str | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            return str(self._sessions.loads(cookie, max_age=self.settings.session_max_age_seconds))
        except BadSignature:
            return None

    async def session(self, request: Request) -> Session | None:
        """The request's live session, or None."""
        session_id = self._session_id(request)
        return None if session_id is None else await self.store.session(session_id)

    async def check_state_change(self, request: Request, session: Session) -> bool:
        """Same-origin and a valid CSRF token, for every method that changes state."""
        if not same_origin(request):
            return False
        submitted = request.headers.get(CSRF_HEADER)
        if submitted is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            value = (await request.form()).get(CSRF_FIELD)
            submitted = value if isinstance(value, str) else None
        return submitted is not None and hmac.compare_digest(submitted.encode(), session.csrf_token.encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (Origin, else Referer)."""
    own = f"{request.url.scheme}://{request.url.netloc}".lower()
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == own
    referer = request.headers.get("referer")
    if referer is not None:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == own
    return True  # not a browser, or one that sends neither: the CSRF token still has to match


def require_role(session: Session, role: Role) -> None:
    """Raise PermissionDenied unless the session's user has `role` (admin has every role)."""
    if role == "admin" and session.role != "admin":
        raise PermissionDenied("this action needs an admin account", required_scope="admin")


def login_redirect(request: Request) -> Response:
    """Send a browser to the login page, remembering a safe local path to come back to."""
    target = request.url.path if request.method == "GET" and request.url.path.startswith("/") else "/"
    return RedirectResponse(f"/login?next={target}", status_code=303)


__all__ = [
    "ADDRESS_USERNAMES",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "Authenticator",
    "Passwords",
    "login_redirect",
    "require_role",
    "same_origin",
]
