"""The operator dashboard: an authenticated Starlette app over the stack servers' public interfaces."""

from mcp_servers.dashboard.app import create_app, serve

__all__ = ["create_app", "serve"]
