"""Bearer API keys (hashed, scoped) and OAuth 2.1 JWT verification for the HTTP transports."""

__all__: list[str] = []
