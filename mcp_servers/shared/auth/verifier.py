"""TokenVerifier for the SDK's bearer middleware: our API keys, and OAuth 2.1 JWTs when configured.

Bounded under abuse: a token longer than `MAX_TOKEN_CHARS` is refused before any work (no hashing, no lookup,
no cache entry); API-key verdicts, accepted and rejected, are cached for `KEY_CACHE_SECONDS` under the SHA-256
digest of the token (never the token itself) in an LRU bounded in entries and in bytes.

An accepted API key becomes a `KeyAccessToken`, which carries the key's own rate (`calls_per_minute`/`burst`) to
the rate limiter; `key_rate` reads it back (None for JWTs and keys without one: the server's limit).
"""

import hashlib
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import anyio
import jwt
from mcp.server.auth.provider import AccessToken

from mcp_servers.shared.auth.failures import AuthFailureReason, note_auth_failure
from mcp_servers.shared.auth.keys import KeyStore, split_token
from mcp_servers.shared.config import AuthSettings
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.resilience.ratelimit import KeyRate

logger = logging.getLogger(__name__)

# Longer bearer tokens are refused unread. Our API keys are 61 characters and JWTs a few KB at most; 8 KiB is the
# default header-line limit of the reverse proxies a deployment sits behind (nginx large_client_header_buffers,
# Apache LimitRequestFieldSize), so no token a proxy would forward is refused here.
MAX_TOKEN_CHARS: Final = 8192
# Revocation reaches every process within this many seconds; the cache keeps PostgreSQL off the hot path.
KEY_CACHE_SECONDS: Final = 2.0
KEY_CACHE_MAX_ENTRIES: Final = 10_000
KEY_CACHE_MAX_BYTES: Final = 4 * 1024 * 1024
# What one cache entry holds besides an accepted token's text: the 32-byte digest key, the (expiry, verdict)
# tuple, the float, the dict slot and, when accepted, the AccessToken with its scopes list.
_ENTRY_BYTES: Final = 240 + sys.getsizeof(hashlib.sha256().digest())


class KeyAccessToken(AccessToken):
    """An accepted API key: the SDK's AccessToken plus the key's own rate (None fields: the server's limit)."""

    calls_per_minute: float | None = None
    burst: int | None = None


def key_rate(token: AccessToken) -> KeyRate | None:
    """The rate limit of the key behind `token`, or None when it has none of its own (or is not one of our keys)."""
    if isinstance(token, KeyAccessToken) and (token.calls_per_minute is not None or token.burst is not None):
        return KeyRate(token.calls_per_minute, token.burst)
    return None


Verdict = AccessToken | AuthFailureReason


class VerdictCache:
    """LRU of `digest -> (expires_at, verdict)`, bounded in entries and in (estimated) bytes.

    A verdict is the accepted AccessToken or the reason the token was refused.
    """

    def __init__(self, *, max_entries: int = KEY_CACHE_MAX_ENTRIES, max_bytes: int = KEY_CACHE_MAX_BYTES) -> None:
        self._entries: OrderedDict[bytes, tuple[float, Verdict, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, now: float) -> Verdict | None:
        """The verdict of an unexpired entry, else None (an expired entry is dropped)."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] <= now:
            self._drop(digest)
            return None
        self._entries.move_to_end(digest)
        return entry[1]

    def put(self, digest: bytes, expires_at: float, verdict: Verdict) -> None:
        cost = _ENTRY_BYTES + (len(verdict.token) + 64 * len(verdict.scopes) if isinstance(verdict, AccessToken) else 0)
        self._drop(digest)
        self._entries[digest] = (expires_at, verdict, cost)
        self.size_bytes += cost
        while len(self._entries) > self._max_entries or self.size_bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def clear(self) -> None:
        self._entries.clear()
        self.size_bytes = 0

    def _drop(self, digest: bytes) -> None:
        entry = self._entries.pop(digest, None)
        if entry is not None:
            self.size_bytes -= entry[2]


class StackTokenVerifier:
    """Accepts `mcps_…` API keys (KeyStore) and, if an issuer is configured, RS256/ES256 JWTs.

    Every refusal is noted (`note_auth_failure`) with its reason for `mcpstack_auth_failures_total`.
    """

    def __init__(self, keys: Callable[[], KeyStore | None], settings: AuthSettings) -> None:
        # A provider, not a store: the database opens with the server's lifespan, after the verifier exists.
        self._keys = keys
        self._settings = settings
        self._cache = VerdictCache()
        self._jwks: jwt.PyJWKClient | None = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True) if settings.jwt_jwks_url else None
        )

    @property
    def cache(self) -> VerdictCache:
        """The API-key verdict cache (read by tests and diagnostics)."""
        return self._cache

    def forget(self) -> None:
        """Drop cached verdicts (after a revocation in this process)."""
        self._cache.clear()

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token) > MAX_TOKEN_CHARS:
            note_auth_failure("too_long")
            return None
        if split_token(token) is not None:
            return await self._verify_api_key(token)
        if self._settings.jwt_issuer:
            return await self._verify_jwt(token)
        note_auth_failure("invalid")
        return None

    async def _verify_api_key(self, token: str) -> AccessToken | None:
        now = time.monotonic()
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        cached = self._cache.get(digest, now)
        if isinstance(cached, AccessToken):
            return cached
        if cached is not None:
            note_auth_failure(cached)
            return None
        keys = self._keys()
        if keys is None:
            note_auth_failure("unavailable")
            return None
        try:
            checked = await keys.check(token)
        except DependencyUnavailable:
            logger.warning("api key check failed: database unavailable")
            note_auth_failure("unavailable")
            return None
        if isinstance(checked, str):
            note_auth_failure(checked)
            self._cache.put(digest, now + KEY_CACHE_SECONDS, checked)
            return None
        verdict = KeyAccessToken(
            token=token,
            client_id=checked.key_id,
            scopes=list(checked.scopes),
            calls_per_minute=checked.calls_per_minute,
            burst=checked.burst,
        )
        self._cache.put(digest, now + KEY_CACHE_SECONDS, verdict)
        return verdict

    async def _verify_jwt(self, token: str) -> AccessToken | None:
        try:
            if self._jwks is not None:
                # PyJWKClient fetches the JWKS with urllib: keep it off the event loop.
                signing_key: Any = (await anyio.to_thread.run_sync(self._jwks.get_signing_key_from_jwt, token)).key
            else:
                assert self._settings.jwt_public_key is not None
                signing_key = self._settings.jwt_public_key.get_secret_value()
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key,
                algorithms=["RS256", "ES256", "EdDSA"],
                issuer=self._settings.jwt_issuer,
                audience=self._settings.jwt_audience,
                options={"require": ["exp", "iss", "sub"], "verify_aud": self._settings.jwt_audience is not None},
            )
        except (jwt.PyJWTError, OSError) as exc:
            logger.info("jwt rejected", extra={"reason": type(exc).__name__})
            note_auth_failure("invalid")
            return None
        scope_claim = claims.get("scope", "")
        scopes = scope_claim.split() if isinstance(scope_claim, str) else []
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims["sub"]),
            scopes=scopes,
            expires_at=int(claims["exp"]),
            subject=str(claims["sub"]),
            claims=claims,
        )
