"""Child process of the crash test: stores documents through AIDB and appends each acknowledged id to a file.

Usage: python -m tests.integration.aidb.crash_child ACKS_FILE COUNT (settings from MCP_STACK_* variables).
A line is appended only after store_document returned, so every line names an acknowledged write.
"""

import os
import sys

import anyio
from mcp import Client

from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import load_settings
from mcp_servers.shared.harness import build_core


def document(number: int) -> str:
    """The content of document `number`: a unique word plus shared filler."""
    return f"# Crash document {number}\nuniqueword{number} appears only here. Shared filler about durable writes."


async def main(acks_path: str, count: int) -> None:
    server = create_server(build_core("aidb", load_settings()))
    fd = os.open(acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with Client(server.mcp) as client:
        for number in range(count):
            result = await client.call_tool("store_document", {"content": document(number), "project": "crash"})
            if result.is_error:
                raise SystemExit(f"store failed: {result.content}")
            document_id = (result.structured_content or {})["document_id"]
            # One write() per line on an O_APPEND descriptor: the parent never reads a torn line.
            os.write(fd, f"{number} {document_id}\n".encode())


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
