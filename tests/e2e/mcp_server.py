"""A tiny MCP server on stdio (the ``mcp`` package), for the real CLI to call: ``python mcp_server.py NAME``.

One tool, ``lookup``, answers what it was asked for from a fixed table, and appends each call to the file
named by ``$E2E_MCP_CALLS`` (when set), so that a test can tell the CLI really called it.
"""

from __future__ import annotations

import json
import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer(sys.argv[1] if len(sys.argv) > 1 else "dims")
ANSWERS = {"answer": "42", "colour": "blue"}


@server.tool()
def lookup(key: str) -> str:
    """Look a key up in the project's table of answers."""
    calls = os.environ.get("E2E_MCP_CALLS")
    if calls:
        with open(calls, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": "lookup", "key": key}) + "\n")
    return ANSWERS.get(key, "unknown")


if __name__ == "__main__":
    server.run()
