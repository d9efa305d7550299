"""A test-only MCP server built with `StackServer` that declares the conformance suite's fixtures.

The official suite (`@modelcontextprotocol/conformance`) calls tools, resources and prompts that only its own
reference server ships (`test_simple_text`, `test://static-text`, `test_prompt_with_arguments`, ...). Production
servers carry no test fixtures, so here they are, behind the very middleware every stack server runs (auth, scope
table, rate limits, error translation, metrics, request-state sealing, both transports' eras): every scored
scenario of both revisions passing against this server means no layer of ours breaks a protocol feature.

Run: `python -m tests.e2e.conformance_fixture_server --port N` with the usual MCP_STACK_* environment
(PostgreSQL DSN, data dir; auth off on 127.0.0.1 since the suite sends no bearer). It borrows Hybrid's name for
its metrics labels and settings section.
"""

import argparse
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CreateMessageRequest,
    CreateMessageRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)
from pydantic import BaseModel, Field

from mcp_servers.shared.annotations import READ_ONLY, WRITE
from mcp_servers.shared.config import load_settings
from mcp_servers.shared.harness import Core, StackServer, build_core, serve_http
from mcp_servers.shared.mcp_tasks import TasksExtension, TaskSnapshot
from mcp_servers.shared.memory_tasks import MemoryTaskBackend, MemoryTaskStore, current_task
from mcp_servers.shared.middleware.mcp import Principal
from mcp_servers.shared.postgres.pool import Database

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_EMPTY = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
WATCHED = "test://watched-resource"
NAME_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
CONFIRM_DELETE_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"confirm": {"type": "boolean"}}}
CONFIRM_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

# The inputSchema json-schema-2020-12 asserts is preserved keyword for keyword.
SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


TASK_TTL_SECONDS = 600
# The SEP-2663 fixtures (the suite's tasks-* scenarios): tools that run as tasks for a client that opted in.
TASK_TOOLS = frozenset(
    {"slow_compute", "failing_job", "protocol_error_job", "confirm_delete", "multi_input", "test_tool_with_task"}
)
TASK_REQUIRED = frozenset({"failing_job", "test_tool_with_task"})  # taskSupport=required: -32021 without opt-in


class FixtureDeps:
    """Only the task store: the other fixtures are static."""

    def __init__(self, tasks: MemoryTaskStore) -> None:
        self.tasks = tasks

    def readiness_checks(self) -> dict[str, Any]:
        return {}


@contextlib.asynccontextmanager
async def open_fixture(_core: Core, _database: Database) -> AsyncIterator[FixtureDeps]:
    async with MemoryTaskStore.open(ttl_seconds=TASK_TTL_SECONDS) as tasks:
        yield FixtureDeps(tasks)


class FixtureTaskBackend(MemoryTaskBackend):
    """`test_tool_with_task` gathers its input synchronously (SEP-2322) and becomes a task on the final round."""

    async def create(
        self, lifespan: Any, owner: Principal, run: CallNext, ctx: ServerRequestContext[Any, Any]
    ) -> TaskSnapshot | HandlerResult:
        params = ctx.params or {}
        if params.get("name") == "test_tool_with_task" and not params.get("inputResponses"):
            return await run(ctx)
        return await super().create(lifespan, owner, run, ctx)


def tasks_extension() -> TasksExtension:
    backend = FixtureTaskBackend(
        TASK_TOOLS, ttl_seconds=TASK_TTL_SECONDS, store_of=lambda deps: deps.tasks, poll_interval_seconds=0.2
    )
    return TasksExtension(backend, max_active_per_principal=1000, required=TASK_REQUIRED)


def elicit_request(message: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An `elicitation/create` input request as a task's inputRequests carry it."""
    return {"method": "elicitation/create", "params": {"mode": "form", "message": message, "requestedSchema": schema}}


async def ask(requests: dict[str, Any]) -> dict[str, Any]:
    """The answers to these input requests: a task parks `input_required` until tasks/update answers them."""
    task = current_task()
    if task is None:  # only ever called as a task (the tools are task-supporting and need the client's answers)
        raise ToolError("call this tool as a task (declare io.modelcontextprotocol/tasks)")
    return await task.ask(requests)


def elicit_name(message: str = "What is your name?") -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=NAME_SCHEMA))


def sample(text: str, max_tokens: int) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=text))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=max_tokens))


def accepted(responses: Any, key: str, field: str) -> Any:
    answer = (responses or {}).get(key)
    return answer.content.get(field) if isinstance(answer, ElicitResult) and answer.content else None


class UserResponse(BaseModel):
    response: str = Field(description="the user's answer")


class Defaults(BaseModel):
    name: str = Field(default="John Doe")
    age: int = Field(default=30)
    score: float = Field(default=95.5)
    status: str = Field(default="active", json_schema_extra={"enum": ["active", "inactive", "pending"]})
    verified: bool = Field(default=True)


class Enums(BaseModel):
    untitledSingle: str = Field(json_schema_extra={"enum": ["active", "inactive", "pending"]})
    titledSingle: str = Field(
        json_schema_extra={
            "oneOf": [
                {"const": "low", "title": "Low Priority"},
                {"const": "medium", "title": "Medium Priority"},
                {"const": "high", "title": "High Priority"},
            ]
        }
    )
    untitledMulti: list[str] = Field(json_schema_extra={"items": {"type": "string", "enum": ["read", "write"]}})
    titledMulti: list[str] = Field(
        json_schema_extra={
            "items": {"anyOf": [{"const": "feature", "title": "New Feature"}, {"const": "bug", "title": "Bug Fix"}]}
        }
    )
    legacyEnum: str = Field(json_schema_extra={"enum": ["small", "large"], "enumNames": ["Small", "Large"]})


def create_fixture_server(core: Core) -> StackServer[FixtureDeps]:
    server = StackServer(
        core,
        instructions="Conformance fixtures.",
        open_deps=open_fixture,
        title="fixtures",
        extensions=[tasks_extension()],
    )
    fanout = server.fanout
    mcp = server.mcp

    @server.tool("test_simple_text", annotations=READ_ONLY)
    async def simple_text() -> str:
        """Conformance fixture `test_simple_text`."""
        return "This is a simple text response for testing."

    @server.tool("test_image_content", annotations=READ_ONLY)
    async def image_content() -> list[ImageContent]:
        """Conformance fixture `test_image_content`."""
        return [ImageContent(type="image", data=PNG_1PX, mime_type="image/png")]

    @server.tool("test_audio_content", annotations=READ_ONLY)
    async def audio_content() -> list[AudioContent]:
        """Conformance fixture `test_audio_content`."""
        return [AudioContent(type="audio", data=WAV_EMPTY, mime_type="audio/wav")]

    def embedded(uri: str, mime_type: str, text: str) -> EmbeddedResource:
        return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type=mime_type, text=text))

    @server.tool("test_embedded_resource", annotations=READ_ONLY)
    async def embedded_resource() -> list[EmbeddedResource]:
        """Conformance fixture `test_embedded_resource`."""
        return [embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")]

    @server.tool("test_multiple_content_types", annotations=READ_ONLY)
    async def multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        """Conformance fixture `test_multiple_content_types`."""
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG_1PX, mime_type="image/png"),
            embedded("test://mixed-content-resource", "application/json", '{"test": "data", "value": 123}'),
        ]

    @server.tool("test_error_handling", annotations=READ_ONLY)
    async def error_handling() -> str:
        """Conformance fixture `test_error_handling`."""
        raise RuntimeError("This tool intentionally returns an error for testing")

    @server.tool("test_tool_with_logging", annotations=READ_ONLY)
    async def tool_with_logging(ctx: Context[FixtureDeps, Any]) -> str:
        """Conformance fixture `test_tool_with_logging`."""
        for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.info(message)
        return "Tool with logging executed successfully"

    @server.tool("test_logging_tool", annotations=READ_ONLY)
    async def logging_tool(ctx: Context[FixtureDeps, Any]) -> str:
        """Conformance fixture `test_logging_tool`."""
        await ctx.info("a log line, sent only when the request asked for a log level")
        return "logged"

    @server.tool("test_tool_with_progress", annotations=READ_ONLY)
    async def tool_with_progress(ctx: Context[FixtureDeps, Any]) -> str:
        """Conformance fixture `test_tool_with_progress`."""
        for step in (0, 50, 100):
            await ctx.report_progress(progress=step, total=100, message=f"Completed step {step} of 100")
        return "progress reported"

    @server.tool("test_sampling", annotations=READ_ONLY)
    async def sampling(prompt: str, ctx: Context[FixtureDeps, Any]) -> str:
        """Conformance fixture `test_sampling`."""
        result = await ctx.session.create_message(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        text = result.content.text if result.content.type == "text" else "No response"
        return f"LLM response: {text}"

    @server.tool("test_elicitation", annotations=READ_ONLY)
    async def elicitation(message: str, ctx: Context[FixtureDeps, Any]) -> str:
        """Conformance fixture `test_elicitation`."""
        result = await ctx.elicit(message=message, schema=UserResponse)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"User response: action={result.action}, content={content}"

    @server.tool("test_elicitation_sep1034_defaults", annotations=READ_ONLY)
    async def elicitation_defaults(ctx: Context[FixtureDeps, Any]) -> str:
        """Conformance fixture `test_elicitation_sep1034_defaults`."""
        result = await ctx.elicit(message="Please provide user information", schema=Defaults)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"Elicitation result: action={result.action}, content={content}"

    @server.tool("test_elicitation_sep1330_enums", annotations=READ_ONLY)
    async def elicitation_enums(ctx: Context[FixtureDeps, Any]) -> str:
        """Conformance fixture `test_elicitation_sep1330_enums`."""
        result = await ctx.elicit(message="Please select values", schema=Enums)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"Elicitation completed: action={result.action}, content={content}"

    @server.tool("test_x_mcp_header", annotations=READ_ONLY)
    async def x_mcp_header(
        region: Annotated[
            str, Field(description="mirrored into Mcp-Param-Region", json_schema_extra={"x-mcp-header": "Region"})
        ] = "<none>",
    ) -> str:
        """Conformance fixture `test_x_mcp_header`."""
        return f"region={region}"

    @server.tool("test_missing_capability", annotations=READ_ONLY)
    async def missing_capability(ctx: Context[FixtureDeps, Any]) -> str:
        """Conformance fixture `test_missing_capability`."""
        capabilities = ctx.client_capabilities
        if capabilities is None or capabilities.sampling is None:
            raise MCPError(
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                "This tool requires the client 'sampling' capability",
                {"requiredCapabilities": {"sampling": {}}},
            )
        return "sampling declared"

    @server.tool("test_streaming_elicitation", annotations=READ_ONLY)
    async def streaming_elicitation() -> InputRequiredResult:
        """Conformance fixture `test_streaming_elicitation`."""
        return InputRequiredResult(input_requests={"user_name": elicit_name()})

    @server.tool("json_schema_2020_12_tool", annotations=READ_ONLY)
    async def json_schema_tool() -> str:
        """Conformance fixture `json_schema_2020_12_tool`."""
        return "json_schema_2020_12_tool"

    # MCPServer.tool() takes no explicit inputSchema (mcp 2.3): install the 2020-12 schema on the registered tool.
    mcp._tool_manager._tools["json_schema_2020_12_tool"].parameters = SCHEMA_2020_12

    # -- SEP-2322 input-required results (2026-07-28) --------------------------------------------------------

    @server.tool("test_input_required_result_elicitation", annotations=READ_ONLY)
    async def ir_elicitation(ctx: Context[FixtureDeps, Any]) -> str | InputRequiredResult:
        """Conformance fixture `test_input_required_result_elicitation`."""
        name = accepted(ctx.input_responses, "user_name", "name")
        if ctx.input_responses and "user_name" in ctx.input_responses:
            return f"Hello, {name}!"
        return InputRequiredResult(input_requests={"user_name": elicit_name()})

    @server.tool("test_input_required_result_sampling", annotations=READ_ONLY)
    async def ir_sampling(ctx: Context[FixtureDeps, Any]) -> str | InputRequiredResult:
        """Conformance fixture `test_input_required_result_sampling`."""
        if ctx.input_responses and "capital_question" in ctx.input_responses:
            return "Model answered."
        return InputRequiredResult(input_requests={"capital_question": sample("What is the capital of France?", 100)})

    @server.tool("test_input_required_result_list_roots", annotations=READ_ONLY)
    async def ir_list_roots(ctx: Context[FixtureDeps, Any]) -> str | InputRequiredResult:
        """Conformance fixture `test_input_required_result_list_roots`."""
        if ctx.input_responses and "client_roots" in ctx.input_responses:
            return "Roots received."
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})

    @server.tool("test_input_required_result_request_state", annotations=READ_ONLY)
    async def ir_request_state(ctx: Context[FixtureDeps, Any]) -> str | InputRequiredResult:
        """Conformance fixture `test_input_required_result_request_state`."""
        if ctx.input_responses and "confirm" in ctx.input_responses and ctx.request_state == "request-state-nonce":
            return "state-ok: confirmation received"
        confirm = ElicitRequest(
            params=ElicitRequestFormParams(message="Please confirm", requested_schema=CONFIRM_SCHEMA)
        )
        return InputRequiredResult(input_requests={"confirm": confirm}, request_state="request-state-nonce")

    @server.tool("test_input_required_result_multiple_inputs", annotations=READ_ONLY)
    async def ir_multiple(ctx: Context[FixtureDeps, Any]) -> str | InputRequiredResult:
        """Conformance fixture `test_input_required_result_multiple_inputs`."""
        if ctx.input_responses and {"user_name", "greeting", "client_roots"} <= ctx.input_responses.keys():
            return "All inputs received."
        requests: dict[str, InputRequest] = {
            "user_name": elicit_name(),
            "greeting": sample("Generate a greeting", 50),
            "client_roots": ListRootsRequest(),
        }
        return InputRequiredResult(input_requests=requests, request_state="multiple-inputs")

    @server.tool("test_input_required_result_multi_round", annotations=READ_ONLY)
    async def ir_multi_round(ctx: Context[FixtureDeps, Any]) -> str | InputRequiredResult:
        """Conformance fixture `test_input_required_result_multi_round`."""
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        responses = ctx.input_responses or {}
        if state["round"] == 1 and "step1" in responses:
            color = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
            step2 = ElicitRequest(
                params=ElicitRequestFormParams(message="Step 2: favorite color?", requested_schema=color)
            )
            name = accepted(responses, "step1", "name")
            return InputRequiredResult(
                input_requests={"step2": step2}, request_state=json.dumps({"round": 2, "name": name})
            )
        if state["round"] == 2 and "step2" in responses:
            return f"{state.get('name')} likes {accepted(responses, 'step2', 'color')}."
        return InputRequiredResult(
            input_requests={"step1": elicit_name("Step 1: What is your name?")}, request_state=json.dumps({"round": 1})
        )

    @server.tool("test_input_required_result_tampered_state", annotations=READ_ONLY)
    async def ir_tampered(ctx: Context[FixtureDeps, Any]) -> str | InputRequiredResult:
        """Conformance fixture `test_input_required_result_tampered_state`."""
        # Tampering is rejected by the SDK's request-state boundary before this runs.
        if ctx.request_state is None:
            confirm = ElicitRequest(
                params=ElicitRequestFormParams(message="Please confirm", requested_schema=CONFIRM_SCHEMA)
            )
            return InputRequiredResult(input_requests={"confirm": confirm}, request_state="round-1")
        return f"state-ok: {ctx.request_state}"

    @server.tool("test_input_required_result_capabilities", annotations=READ_ONLY)
    async def ir_capabilities(ctx: Context[FixtureDeps, Any]) -> InputRequiredResult:
        """Conformance fixture `test_input_required_result_capabilities`."""
        caps = ctx.client_capabilities
        requests: dict[str, InputRequest] = {}
        if caps is None or caps.sampling is not None:
            requests["sample"] = sample("Say hello", 50)
        if caps is None or caps.elicitation is not None:
            requests["ask"] = elicit_name()
        return InputRequiredResult(input_requests=requests, request_state="capability-gated")

    # -- list changes (2026-07-28 subscriptions/listen; legacy sessions that subscribed) ------------------------

    async def dynamic() -> str:
        return "dynamic"

    @server.tool("test_trigger_tool_change", annotations=WRITE)
    async def trigger_tool_change() -> str:
        """Conformance fixture `test_trigger_tool_change`."""
        mcp.add_tool(dynamic, name="test_dynamic_tool")
        mcp.remove_tool("test_dynamic_tool")
        await fanout.list_changed("tools")
        return "tool list changed"

    @server.tool("test_trigger_prompt_change", annotations=WRITE)
    async def trigger_prompt_change() -> str:
        """Conformance fixture `test_trigger_prompt_change`."""
        mcp.add_prompt(Prompt.from_function(dynamic, name="test_dynamic_prompt", description="dynamic"))
        mcp.remove_prompt("test_dynamic_prompt")
        await fanout.list_changed("prompts")
        return "prompt list changed"

    # -- SEP-2663 tasks (2026-07-28, io.modelcontextprotocol/tasks) ----------------------------------------

    @server.tool("greet", annotations=READ_ONLY)
    async def greet(name: Annotated[str, Field(max_length=200)]) -> str:
        """Conformance fixture `greet` (sync only)."""
        return f"Hello, {name}!"

    @server.tool("slow_compute", annotations=READ_ONLY)
    async def slow_compute(
        seconds: Annotated[int, Field(ge=0, le=120)], label: Annotated[str, Field(max_length=200)] = ""
    ) -> str:
        """Conformance fixture `slow_compute`: sleeps, then answers."""
        await anyio.sleep(seconds)
        return f"computed {label} after {seconds}s"

    @server.tool("failing_job", annotations=READ_ONLY)
    async def failing_job() -> str:
        """Conformance fixture `failing_job`: a tool execution error (task support required)."""
        await anyio.sleep(0.2)
        raise ToolError("failing_job always fails")

    @server.tool("protocol_error_job", annotations=READ_ONLY)
    async def protocol_error_job() -> str:
        """Conformance fixture `protocol_error_job`: a protocol-level error."""
        raise MCPError(INTERNAL_ERROR, "protocol_error_job fails at the protocol level")

    @server.tool("confirm_delete", annotations=WRITE)
    async def confirm_delete(filename: Annotated[str, Field(max_length=200)]) -> str:
        """Conformance fixture `confirm_delete`: asks for a confirmation, then answers."""
        answers = await ask({"confirm": elicit_request(f"Delete {filename}?", CONFIRM_DELETE_SCHEMA)})
        confirmed = (answers.get("confirm") or {}).get("content", {}).get("confirm") is True
        return f"{filename} deleted" if confirmed else f"{filename} kept"

    @server.tool("multi_input", annotations=READ_ONLY)
    async def multi_input() -> str:
        """Conformance fixture `multi_input`: two input requests pending at once."""
        answers = await ask(
            {
                "name": elicit_request("What is your name?", NAME_SCHEMA),
                "confirm": elicit_request("Proceed?", CONFIRM_DELETE_SCHEMA),
            }
        )
        return f"received {len(answers)} answers"

    @server.tool("test_tool_with_task", annotations=READ_ONLY)
    async def tool_with_task(ctx: Context[FixtureDeps, Any]) -> str | InputRequiredResult:
        """Conformance fixture `test_tool_with_task`: asks for a name (SEP-2322), then runs as a task."""
        if ctx.input_responses and "user_name" in ctx.input_responses:
            return f"Hello, {accepted(ctx.input_responses, 'user_name', 'name')}!"
        return InputRequiredResult(input_requests={"user_name": elicit_name()})

    # -- resources ----------------------------------------------------------------------------------------

    @server.resource("test://static-text", name="static-text", description="static text", mime_type="text/plain")
    async def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", name="static-binary", description="a PNG", mime_type="image/png")
    async def static_binary() -> bytes:
        return base64.b64decode(PNG_1PX)

    @server.resource("test://template/{id}/data", name="template", description="templated data")
    async def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource(WATCHED, name="watched", description="subscribable", mime_type="text/plain")
    async def watched() -> str:
        return "Watched resource content"

    # -- prompts ------------------------------------------------------------------------------------------

    @server.prompt("test_simple_prompt", description="A simple prompt without arguments")
    async def simple_prompt() -> list[UserMessage]:
        return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]

    @server.prompt("test_prompt_with_arguments", description="A prompt with required arguments")
    async def prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]

    @server.prompt("test_prompt_with_embedded_resource", description="A prompt with an embedded resource")
    async def prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        return [
            UserMessage(role="user", content=embedded(resourceUri, "text/plain", "Embedded resource content.")),
            UserMessage(role="user", content=TextContent(type="text", text="Please process the resource above.")),
        ]

    @server.prompt("test_prompt_with_image", description="A prompt with an image")
    async def prompt_with_image() -> list[UserMessage]:
        return [
            UserMessage(role="user", content=ImageContent(type="image", data=PNG_1PX, mime_type="image/png")),
            UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above.")),
        ]

    @server.prompt("test_input_required_result_prompt", description="A prompt that first asks for context")
    async def ir_prompt(ctx: Context[FixtureDeps, Any]) -> list[UserMessage] | InputRequiredResult:
        if ctx.input_responses and "user_context" in ctx.input_responses:
            text = accepted(ctx.input_responses, "user_context", "context") or "?"
            return [UserMessage(role="user", content=TextContent(type="text", text=f"Use this context: {text}"))]
        schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
        ask = ElicitRequest(params=ElicitRequestFormParams(message="What context?", requested_schema=schema))
        return InputRequiredResult(input_requests={"user_context": ask})

    @server.complete("test_prompt_with_arguments", "arg1")
    async def complete_arg1(prefix: str, limit: int) -> list[str]:
        return [value for value in ("paris", "park", "party") if value.startswith(prefix)][:limit]

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    # Generous limits: the suite bursts, and nothing is exempt from the limiter.
    settings = load_settings(rate_limit={"calls_per_minute": 600_000, "burst": 10_000})
    server = create_fixture_server(build_core("hybrid", settings))
    anyio.run(lambda: serve_http(server, port=port))


if __name__ == "__main__":
    main()
