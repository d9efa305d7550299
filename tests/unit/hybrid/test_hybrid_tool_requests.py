"""Hybrid's tool schemas are pinned, and each tool's request object carries exactly the tool's parameters."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_servers.hybrid.models import (
    AugmentRequest,
    OutcomeRequest,
    RouteQueryRequest,
    SearchRequest,
    TrackRequest,
    TrainingDataRequest,
)
from mcp_servers.hybrid.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core

# Written from `tools/list` before tool arguments became request objects: the schemas clients see must not move.
PINNED = Path(__file__).with_name("tool_input_schemas.json")
REQUESTS: dict[str, type[Any]] = {
    "augment_query": AugmentRequest,
    "search_context": SearchRequest,
    "route_query": RouteQueryRequest,
    "track_interaction": TrackRequest,
    "update_outcome": OutcomeRequest,
    "generate_training_data": TrainingDataRequest,
}


@pytest.fixture
def input_schemas(tmp_path: Path) -> dict[str, dict[str, Any]]:
    server = create_server(build_core("hybrid", StackSettings(data_dir=tmp_path)))
    tools = anyio.run(server.mcp.list_tools)
    return {tool.name: tool.model_dump(mode="json", by_alias=True, exclude_none=True)["inputSchema"] for tool in tools}


def test_tool_input_schemas_match_the_pinned_schemas(input_schemas: dict[str, dict[str, Any]]) -> None:
    assert input_schemas == json.loads(PINNED.read_text(encoding="utf-8"))


def test_each_request_object_has_the_tools_parameters_and_defaults(input_schemas: dict[str, dict[str, Any]]) -> None:
    assert set(REQUESTS) == set(input_schemas) - {"learning_stats"}
    for tool, request in REQUESTS.items():
        schema = input_schemas[tool]
        fields = {field.name: field for field in dataclasses.fields(request)}
        assert set(fields) == set(schema["properties"]), tool
        required = {name for name, field in fields.items() if field.default is dataclasses.MISSING}
        assert required == set(schema.get("required", [])), tool
        for name, field in fields.items():
            if field.default is not dataclasses.MISSING:
                assert schema["properties"][name]["default"] == field.default, (tool, name)
