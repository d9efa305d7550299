"""Operator tooling behind `mcp-stack`: backup and restore, doctor, client configuration snippets."""

__all__: list[str] = []
