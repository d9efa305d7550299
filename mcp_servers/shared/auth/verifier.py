"""TokenVerifier for the SDK's bearer middleware: our API keys, and OAuth 2.1 JWTs when configured."""

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import jwt
from mcp.server.auth.provider import AccessToken

from mcp_servers.shared.auth.keys import KeyStore, split_token
from mcp_servers.shared.config import AuthSettings
from mcp_servers.shared.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

# Revocation reaches every process within this many seconds; the cache keeps PostgreSQL off the hot path.
KEY_CACHE_SECONDS = 2.0
_KEY_CACHE_MAX = 10_000


class StackTokenVerifier:
    """Accepts `mcps_…` API keys (KeyStore) and, if an issuer is configured, RS256/ES256 JWTs."""

    def __init__(self, keys: Callable[[], KeyStore | None], settings: AuthSettings) -> None:
        # A provider, not a store: the database opens with the server's lifespan, after the verifier exists.
        self._keys = keys
        self._settings = settings
        self._cache: dict[str, tuple[float, AccessToken | None]] = {}
        self._jwks: jwt.PyJWKClient | None = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True) if settings.jwt_jwks_url else None
        )

    def forget(self) -> None:
        """Drop cached verdicts (after a revocation in this process)."""
        self._cache.clear()

    async def verify_token(self, token: str) -> AccessToken | None:
        if split_token(token) is not None:
            return await self._verify_api_key(token)
        if self._settings.jwt_issuer:
            return await self._verify_jwt(token)
        return None

    async def _verify_api_key(self, token: str) -> AccessToken | None:
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        keys = self._keys()
        if keys is None:
            return None
        try:
            key = await keys.verify(token)
        except DependencyUnavailable:
            logger.warning("api key check failed: database unavailable")
            return None
        verdict = None if key is None else AccessToken(token=token, client_id=key.key_id, scopes=list(key.scopes))
        if len(self._cache) >= _KEY_CACHE_MAX:
            self._cache.clear()
        self._cache[token] = (now + KEY_CACHE_SECONDS, verdict)
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
