"""MCP agent stack: AIDB, Hybrid, Ralph and the operator dashboard."""

__version__ = "0.1.0"
