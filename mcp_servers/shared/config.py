"""Typed settings for the whole stack: one root model, one nested model per concern.

Sources, highest first: init kwargs, environment (`MCP_STACK_` prefix, `__` for nesting, e.g.
`MCP_STACK_AIDB__SEARCH_LIMIT`), `*_FILE` secrets (`MCP_STACK_POSTGRES__DSN_FILE=/run/secrets/dsn`),
the TOML file named by `MCP_STACK_CONFIG_FILE`, then defaults.
"""

import ipaddress
import os
import shlex
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.hosts import LOOPBACK_HOSTS, check_host_entry

ENV_PREFIX = "MCP_STACK_"
CONFIG_FILE_VARIABLE = f"{ENV_PREFIX}CONFIG_FILE"

ServerName = Literal["aidb", "hybrid", "ralph", "dashboard"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_file_pointers(cls, data: Any) -> Any:
        # `X_FILE` variables are resolved by _SecretFileSource; the env source also sees them as `x_file`.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if not str(key).endswith("_file")}
        return data


class PostgresSettings(_Section):
    """Where the system of record lives; no DSN means the embedded server in the data dir."""

    dsn: SecretStr | None = Field(default=None, description="postgresql:// DSN; unset = embedded PostgreSQL")
    pool_min_size: int = Field(default=1, ge=0, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=200)
    command_timeout_seconds: float = Field(default=30.0, ge=0.1, le=3600)
    connect_timeout_seconds: float = Field(default=5.0, ge=0.1, le=120)

    @model_validator(mode="after")
    def _check_pool(self) -> "PostgresSettings":
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        if self.dsn is not None and not self.dsn.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("dsn must start with postgresql://")
        return self


class VectorSettings(_Section):
    """Which Qdrant engine holds the vectors."""

    backend: Literal["edge", "qdrant"] = Field(default="edge", description="edge = embedded Qdrant Edge")
    url: str | None = Field(default=None, description="Qdrant server URL (backend=qdrant); unset = local mode")
    api_key: SecretStr | None = None
    path: Path | None = Field(default=None, description="storage dir; default <data_dir>/vectors")
    timeout_seconds: float = Field(default=10.0, ge=0.1, le=600)


class EmbedderSettings(_Section):
    """The sentence-embedding model."""

    backend: Literal["onnx", "openai"] = "onnx"
    dimension: int = Field(default=384, ge=8, le=8192)
    max_tokens: int = Field(
        default=256, ge=16, le=8192, description="the model reads at most this many tokens (AIDB cuts chunks to fit)"
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    threads: int = Field(default=2, ge=1, le=64, description="backend=onnx: inferences run side by side, one core each")
    url: str | None = Field(default=None, description="OpenAI-compatible base URL (backend=openai)")
    model: str = Field(default="all-MiniLM-L6-v2", max_length=200)
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, ge=0.1, le=600)
    model_dir: Path | None = Field(
        default=None, description="tokenizer files (backend=onnx); default ~/.cache/mcp-stack/models/all-MiniLM-L6-v2"
    )
    onnx_model: Literal["dynamic-int8", "weight-int8"] = Field(
        default="dynamic-int8",
        description="backend=onnx: dynamic-int8 = int8 weights and activations, derived at provisioning (~1.9x "
        "faster, same retrieval quality); weight-int8 = the pinned file as shipped (int8 weights, fp32 arithmetic)",
    )

    @model_validator(mode="after")
    def _check_openai(self) -> "EmbedderSettings":
        if self.backend == "openai" and not self.url:
            raise ValueError("url is required when backend is openai")
        return self


class AuthSettings(_Section):
    """Who may call the HTTP transports; stdio always trusts its parent process."""

    required: bool = Field(default=True, description="require a bearer key on HTTP transports")
    jwt_issuer: str | None = Field(default=None, description="OAuth 2.1 issuer URL; enables JWT verification")
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_public_key: SecretStr | None = Field(default=None, description="PEM key instead of a JWKS URL")

    @model_validator(mode="after")
    def _check_jwt(self) -> "AuthSettings":
        if self.jwt_issuer and not (self.jwt_jwks_url or self.jwt_public_key):
            raise ValueError("jwt_issuer needs jwt_jwks_url or jwt_public_key")
        return self


class RateLimitSettings(_Section):
    """One budget per principal and tool (`tools/call`), per principal and method, and for opening sessions."""

    enabled: bool = True
    calls_per_minute: float = Field(
        default=600.0, gt=0, le=1_000_000, description="refill rate; a key's own (`keys create`) replaces it"
    )
    burst: int = Field(default=60, ge=1, le=100_000, description="calls at once; a key's own replaces it")
    redis_url: SecretStr | None = Field(default=None, description="redis:// URL to share budgets across replicas")


class BreakerSettings(_Section):
    """One circuit breaker per outbound dependency."""

    failure_threshold: int = Field(default=5, ge=1, le=1000, description="consecutive failures that open it")
    open_seconds: float = Field(default=10.0, ge=0.01, le=3600)
    half_open_probes: int = Field(default=1, ge=1, le=100)


class HttpSettings(_Section):
    """Where the HTTP transports listen."""

    host: str = Field(default="127.0.0.1", max_length=255)
    aidb_port: int = Field(default=8801, ge=0, le=65535)
    hybrid_port: int = Field(default=8802, ge=0, le=65535)
    ralph_port: int = Field(default=8803, ge=0, le=65535)
    dashboard_port: int = Field(default=8800, ge=0, le=65535)
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host headers to accept besides loopback ones (e.g. dash.example or dash.example:*); "
        "the MCP endpoints and the dashboard answer any other Host 421",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (e.g. 10.0.0.5, 10.0.0.0/8) whose X-Forwarded-For/-Proto the dashboard "
        "believes; default none",
    )
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024**3)
    max_sessions: int = Field(
        default=10_000, ge=1, le=1_000_000, description="open 2025-11-25 Streamable HTTP sessions, all callers"
    )
    max_sessions_per_principal: int = Field(
        default=100, ge=1, le=1_000_000, description="open sessions (Streamable HTTP and SSE) one key may hold"
    )

    @model_validator(mode="after")
    def _check_proxies(self) -> "HttpSettings":
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {proxy!r} is not an IP address or network") from None
        return self


class ObservabilitySettings(_Section):
    """Logs, metrics and traces."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    console: Literal["auto", "summary", "full"] = Field(
        default="auto",
        description="stderr: summary = warnings and notable events as short lines; full = every record in "
        "log_format; auto = summary on a terminal, full otherwise",
    )
    log_dir: Path | None = Field(default=None, description="JSON log files, one per process; default <data_dir>/logs")
    log_file_max_bytes: int = Field(default=10 * 1024 * 1024, ge=4096, le=1024**3, description="rotate at this size")
    log_file_backups: int = Field(default=3, ge=0, le=100, description="rotated log files kept per process")
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces; unset = no export"
    )


class TelemetrySettings(_Section):
    """JSONL event files written by every server and consumed by Hybrid's learning pipeline."""

    path: Path | None = Field(default=None, description="directory; default <data_dir>/telemetry")
    max_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024**3, description="rotate at this size")
    max_file_age_seconds: float = Field(
        default=86400.0, ge=0, le=366 * 86400, description="rotate when the first event is this old; 0 = size only"
    )
    compress: bool = Field(default=True, description="gzip rotated files")
    retention_days: float = Field(
        default=30.0, ge=0, le=3660, description="delete rotated files older than this (read or not); 0 = keep all"
    )
    max_rotated_files: int = Field(default=0, ge=0, le=1_000_000, description="keep at most this many; 0 = no limit")


class AidbSettings(_Section):
    """Knowledge base."""

    max_document_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=1024**3)
    search_limit: int = Field(default=10, ge=1, le=100, description="default page size of search")
    allowed_roots: list[Path] = Field(default_factory=list, description="directories ingest_path may read")
    max_ingest_files: int = Field(default=10_000, ge=1, le=1_000_000, description="files per ingest_path call")
    cache_ttl_seconds: float = Field(default=60.0, ge=0, le=86400, description="query cache TTL; 0 disables it")
    cache_max_entries: int = Field(default=2048, ge=1, le=1_000_000)
    chunk_tokens: int = Field(default=200, ge=16, le=4096)
    chunk_overlap_tokens: int = Field(default=30, ge=0, le=1024)
    max_search_candidates: int = Field(
        default=1000, ge=10, le=10_000, description="deepest chunk rank a search (and its pages) can reach"
    )
    hybrid_dense_weight: float = Field(
        default=0.5, ge=0, le=1, description="hybrid search: weight of the dense score (the rest is BM25)"
    )
    hybrid_lexical_saturation: float = Field(
        default=40.0,
        gt=0,
        le=10_000,
        description="hybrid search: BM25 score whose lexical half is 0.5 (bm25 / (bm25 + this))",
    )
    indexer_batch: int = Field(default=64, ge=1, le=10_000, description="outbox rows applied per transaction")
    indexer_poll_seconds: float = Field(default=2.0, ge=0.05, le=600)
    register_servers: dict[str, str] = Field(
        default_factory=dict,
        description="MCP servers (name -> URL, or a stdio command line) AIDB indexes at start-up; the only way to "
        "give AIDB a stdio server (register_mcp_server re-indexes one by name)",
    )
    peer_api_key: SecretStr | None = Field(
        default=None,
        description="bearer key AIDB sends to the HTTP servers of register_servers (only to those; needs their read "
        "scope); peer_api_keys overrides it per server",
    )
    peer_api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="per register_servers name: the bearer key sent to that server only (mcp-stack up sets these)",
    )
    allowed_peer_hosts: list[str] = Field(
        default_factory=lambda: list(LOOPBACK_HOSTS),
        max_length=1000,
        description="hosts register_mcp_server may reach besides those of register_servers: hostnames (exact, no "
        "DNS), IP addresses or networks such as 10.0.0.0/8",
    )
    mcp_task_ttl_seconds: int = Field(
        default=3600,
        ge=1,
        le=7 * 86400,
        description="a finished ingest_path/reindex MCP task stays readable (tasks/get) this long after it ended",
    )
    mcp_tasks_per_principal: int = Field(
        default=4, ge=1, le=1000, description="unfinished ingest_path/reindex MCP tasks one caller may hold"
    )

    @model_validator(mode="after")
    def _check_overlap(self) -> "AidbSettings":
        if self.chunk_overlap_tokens * 2 > self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be at most half of chunk_tokens")
        return self

    @model_validator(mode="after")
    def _check_peers(self) -> "AidbSettings":
        unknown = sorted(set(self.peer_api_keys) - set(self.register_servers))
        if unknown:
            raise ValueError(f"peer_api_keys names servers that are not in register_servers: {', '.join(unknown)}")
        for entry in self.allowed_peer_hosts:
            check_host_entry(entry)
        for name, target in self.register_servers.items():
            if target.startswith(("http://", "https://")):
                continue
            try:
                argv = shlex.split(target)
            except ValueError:
                argv = []
            if not argv:
                raise ValueError(f"register_servers[{name!r}] is neither an http(s) URL nor a command line")
        return self


class LlmBackendSettings(_Section):
    """One chat backend Hybrid may route to (OpenAI-compatible or Anthropic Messages)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="unique; also the breaker name llm:<name>")
    kind: Literal["local", "remote"] = Field(description="local = on this machine/network; remote = paid or external")
    protocol: Literal["openai", "anthropic"] = "openai"
    base_url: str = Field(max_length=2000, description="OpenAI: ends in /v1; Anthropic: the API root")
    model: str = Field(max_length=200)
    api_key: SecretStr | None = None
    api_key_path: Path | None = Field(default=None, description="file holding the API key (read at start-up)")
    context_window_tokens: int = Field(default=4096, ge=256, le=10_000_000)
    cost_per_1k_tokens: float = Field(default=0.0, ge=0, le=1000, description="prompt + completion, budget units")
    timeout_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    json_mode: Literal["json_schema", "json_object"] = Field(
        default="json_schema", description="json_object = llama-cpp-python's response_format with inline schema"
    )

    @model_validator(mode="after")
    def _check_url(self) -> "LlmBackendSettings":
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return self


class HybridSettings(_Section):
    """LLM coordinator."""

    aidb_url: str | None = Field(default=None, description="AIDB MCP URL; unset = no AIDB context")
    aidb_api_key: SecretStr | None = None
    aidb_search_tool: str = Field(default="search", max_length=100)
    aidb_timeout_seconds: float = Field(default=10.0, ge=0.1, le=600)
    ralph_url: str | None = Field(default=None, description="Ralph MCP URL for optimisation proposals; unset = off")
    ralph_api_key: SecretStr | None = None
    ralph_timeout_seconds: float = Field(
        default=10.0, ge=0.1, le=600, description="per call to Ralph (submitting an optimisation proposal)"
    )
    checkpoint_every_events: int = Field(default=100, ge=1, le=1_000_000)
    backpressure_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, le=1024**4)
    pipeline_enabled: bool = Field(default=True, description="run the telemetry learning pipeline in this process")
    pipeline_poll_seconds: float = Field(default=1.0, ge=0.01, le=3600)
    delete_consumed_telemetry: bool = Field(
        default=True, description="delete rotated telemetry files once the pipeline's checkpoint has passed them"
    )
    async_commit_records: bool = Field(
        default=False,
        description="record routing decisions without waiting for the WAL flush (faster; a PostgreSQL crash may "
        "lose the last fraction of a second of them)",
    )
    backends: list[LlmBackendSettings] = Field(default_factory=list, max_length=32)
    allow_secrets_remote: bool = Field(default=False, description="send content flagged secret to remote backends")
    complexity_threshold: float = Field(default=0.6, ge=0, le=1, description="initial escalation threshold")
    complexity_threshold_min: float = Field(default=0.3, ge=0, le=1)
    complexity_threshold_max: float = Field(default=0.9, ge=0, le=1)
    threshold_step: float = Field(default=0.02, ge=0, le=0.5, description="adaptation per recorded outcome")
    daily_budget: float = Field(default=10.0, ge=0, le=1_000_000, description="remote spend per UTC day")
    pattern_min_value: float = Field(default=0.6, ge=0, le=1, description="value score that makes a pattern")
    pattern_merge_similarity: float = Field(default=0.9, ge=0, le=1)
    context_max_tokens: int = Field(default=1024, ge=0, le=1_000_000, description="context budget of augment_query")

    @model_validator(mode="after")
    def _check_hybrid(self) -> "HybridSettings":
        names = [backend.name for backend in self.backends]
        if len(names) != len(set(names)):
            raise ValueError("backend names must be unique")
        if self.complexity_threshold_min > self.complexity_threshold_max:
            raise ValueError("complexity_threshold_min must not exceed complexity_threshold_max")
        return self


# How Ralph reads an agent command's stdout (see ralph/backends/agent_output.py).
AgentOutput = Literal["text", "claude_json", "gemini_json", "aider_text"]
COST_REPORTING_OUTPUTS: frozenset[str] = frozenset({"claude_json", "aider_text"})


class CommandTemplate(_Section):
    """One operator-configured agent command: its argv and what its sandbox may reach beyond the workspace."""

    argv: list[str] = Field(min_length=1, max_length=256, description="program and arguments ({prompt} ...)")
    network: bool = Field(default=False, description="keep the network (agent CLIs that call their API need it)")
    ro_binds: list[Path] = Field(
        default_factory=list, max_length=64, description="absolute paths the command may read (e.g. its config dir)"
    )
    home_binds: list[Path] = Field(
        default_factory=list,
        max_length=16,
        description="paths relative to the server user's home (e.g. .claude) the command reads at the same place "
        "under its sandbox home, read-only: where an agent CLI finds its settings and login",
    )
    env_passthrough: list[str] = Field(
        default_factory=list, max_length=32, description="environment variables this command also gets (API keys)"
    )
    output: AgentOutput = Field(
        default="text",
        description="how to read the command's stdout: text as is, or the JSON an agent CLI prints, which gives its "
        "final message, tokens and (claude_json, aider_text) cost",
    )

    @model_validator(mode="after")
    def _check(self) -> "CommandTemplate":
        if not self.argv[0]:
            raise ValueError("argv must name a program")
        _check_binds(self.ro_binds)
        for path in self.home_binds:
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise ValueError(f"home bind {str(path)!r} must be a relative path inside the home directory")
        return self

    @property
    def reports_cost(self) -> bool:
        """Whether this command's output says what an iteration cost (so a cost cap can be kept)."""
        return self.output in COST_REPORTING_OUTPUTS


def _normal(path: Path) -> Path:
    return Path(os.path.normpath(path))


def _check_binds(paths: list[Path]) -> None:
    for path in paths:
        if not path.is_absolute() or path == Path("/"):
            raise ValueError(f"sandbox bind {str(path)!r} must be an absolute path other than /")


class RalphSettings(_Section):
    """Agent loop: workers, leases, backends, limits and the sandbox for the commands it runs."""

    workers: int = Field(default=4, ge=0, le=256, description="concurrent tasks per process; 0 = serve only, no worker")
    lease_seconds: float = Field(default=30.0, ge=1, le=3600, description="a dead worker's task is resumed after this")
    control_poll_seconds: float = Field(
        default=0.4, ge=0.05, le=0.5, description="how often workers look for stop requests and new tasks"
    )
    workspace_roots: list[Path] = Field(default_factory=list, description="task workspaces must lie under one of these")
    command_templates: dict[str, CommandTemplate] = Field(
        default_factory=dict,
        description='agent commands; backend "command" uses "default", "command:NAME" uses NAME. Each is an argv '
        "list or {argv, network, ro_binds}; {prompt} {task_id} {iteration} {workspace} are substituted in argv, "
        "the prompt is also sent on stdin",
    )
    allow_task_commands: bool = Field(
        default=False,
        description="accept verify_command and hooks (programs chosen by the caller) from keys with ralph:exec",
    )
    sandbox: Literal["bubblewrap", "none"] = Field(
        default="bubblewrap",
        description='every command runs under bubblewrap; "none" runs them unconfined (an explicit opt-out)',
    )
    bwrap_path: Path = Field(default=Path("/usr/bin/bwrap"), description="the bubblewrap binary (apt: bubblewrap)")
    sandbox_uid: int = Field(default=65534, ge=1, le=2**32 - 2, description="commands run as this uid when root")
    sandbox_gid: int = Field(default=65534, ge=1, le=2**32 - 2, description="and this gid")
    sandbox_ro_binds: list[Path] = Field(
        default_factory=list, max_length=64, description="absolute paths every sandboxed command may read"
    )
    env_passthrough: list[str] = Field(
        default_factory=list, description="environment variables passed to agent commands (e.g. ANTHROPIC_API_KEY)"
    )
    iteration_timeout_seconds: float = Field(default=900.0, ge=0.1, le=86400)
    hook_timeout_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    verify_timeout_seconds: float = Field(default=300.0, ge=0.1, le=86400)
    kill_grace_seconds: float = Field(default=0.5, ge=0.0, le=1.5, description="SIGTERM to SIGKILL of a process group")
    max_output_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024, description="kept per iteration")
    stuck_repeat_threshold: int = Field(default=3, ge=2, le=1000, description="same output this many times = stuck")
    max_consecutive_failures: int = Field(default=5, ge=1, le=1000)
    backoff_base_seconds: float = Field(default=1.0, ge=0.0, le=3600)
    backoff_max_seconds: float = Field(default=60.0, ge=0.0, le=86400)
    hybrid_url: str | None = Field(default=None, description="Hybrid MCP URL (…/mcp) for the hybrid backend")
    hybrid_api_key: SecretStr | None = None
    aidb_url: str | None = Field(default=None, description="AIDB MCP URL (…/mcp) for iteration context")
    aidb_api_key: SecretStr | None = None
    context_results: int = Field(default=3, ge=0, le=50, description="AIDB search hits added to each hybrid prompt")
    hybrid_max_tokens: int = Field(default=1024, ge=1, le=1_000_000)
    mcp_timeout_seconds: float = Field(default=120.0, ge=0.1, le=3600)
    mcp_task_ttl_seconds: int = Field(
        default=86_400,
        ge=60,
        le=30 * 86400,
        description="an MCP task handle (tasks/get) stays readable this long after the task last changed",
    )
    mcp_tasks_per_principal: int = Field(
        default=20, ge=1, le=10_000, description="unfinished tasks one caller may hold when submitting as MCP tasks"
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> "RalphSettings":
        if self.backoff_base_seconds > self.backoff_max_seconds:
            raise ValueError("backoff_base_seconds must not exceed backoff_max_seconds")
        if not self.bwrap_path.is_absolute():
            raise ValueError("bwrap_path must be an absolute path")
        _check_binds(self.sandbox_ro_binds)
        return self

    @field_validator("command_templates", mode="before")
    @classmethod
    def _argv_lists_are_templates(cls, value: Any) -> Any:
        # The original form, NAME -> argv list, stays valid: it is a template without network or extra binds.
        if isinstance(value, dict):
            return {name: {"argv": item} if isinstance(item, list) else item for name, item in value.items()}
        return value


class DashboardSettings(_Section):
    """Operator web UI."""

    session_secret: SecretStr | None = Field(default=None, description="cookie signing key; default generated")
    session_max_age_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 86400)
    service_api_key: SecretStr | None = Field(
        default=None, description="bearer key the dashboard uses to call the servers (mcp-stack up creates one)"
    )
    aidb_url: str | None = Field(default=None, description="AIDB base URL; default http://<http.host>:<aidb_port>")
    hybrid_url: str | None = Field(default=None, description="Hybrid base URL; default from http settings")
    ralph_url: str | None = Field(default=None, description="Ralph base URL; default from http settings")
    supervised: bool = Field(default=False, description="started by mcp-stack up: offer restarting its servers")
    login_attempts_per_minute: float = Field(
        default=10.0,
        gt=0,
        le=10_000,
        description="per client address and username; one address gets 4 times this over all usernames",
    )
    login_burst: int = Field(default=5, ge=1, le=1000)
    secure_cookies: bool = Field(
        default=False,
        description="always mark cookies Secure (they are anyway on https requests, direct or from a trusted proxy)",
    )
    user_calls_per_minute: float = Field(
        default=120.0,
        gt=0,
        le=1_000_000,
        description="calls each dashboard user's pages may make to the servers (at most half the service key's)",
    )
    user_burst: int = Field(default=30, ge=1, le=100_000, description="see user_calls_per_minute")
    sample_seconds: float = Field(default=2.0, ge=0.1, le=3600, description="how often server status is sampled")
    history_samples: int = Field(default=180, ge=2, le=100_000, description="samples kept for the charts")
    request_timeout_seconds: float = Field(default=10.0, ge=0.1, le=600)
    stream_fallback_seconds: float = Field(
        default=30.0,
        ge=0.1,
        le=3600,
        description="live task pages refresh on Ralph's notifications; this re-read is only their safety net",
    )

    @model_validator(mode="after")
    def _check_urls(self) -> "DashboardSettings":
        for name in ("aidb_url", "hybrid_url", "ralph_url"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("http://", "https://")):
                raise ValueError(f"{name} must start with http:// or https://")
        return self


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the optional TOML file named by MCP_STACK_CONFIG_FILE."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get(CONFIG_FILE_VARIABLE)
        self._data: dict[str, Any] = {}
        if path:
            try:
                self._data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigurationError(f"{CONFIG_FILE_VARIABLE}: cannot read {path} ({exc.strerror})") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigurationError(f"{CONFIG_FILE_VARIABLE}: {path} is not valid TOML ({exc})") from exc

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _SecretFileSource(PydanticBaseSettingsSource):
    """Resolves `MCP_STACK_<PATH>_FILE` variables: the file's stripped content becomes the value."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, path in os.environ.items():
            if not (name.startswith(ENV_PREFIX) and name.endswith("_FILE")) or name == CONFIG_FILE_VARIABLE:
                continue
            keys = name[len(ENV_PREFIX) : -len("_FILE")].lower().split("__")
            try:
                secret = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigurationError(f"{name}: cannot read {path} ({exc.strerror})") from exc
            node = values
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = secret
        return values


class StackSettings(BaseSettings):
    """Everything the stack reads from its environment, validated before any transport opens."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        nested_model_default_partial_update=True,
    )

    data_dir: Path = Field(default=Path.home() / ".local/share/mcp-stack", description="state of the embedded stack")
    postgres: PostgresSettings = PostgresSettings()
    vectors: VectorSettings = VectorSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    breaker: BreakerSettings = BreakerSettings()
    http: HttpSettings = HttpSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    aidb: AidbSettings = AidbSettings()
    hybrid: HybridSettings = HybridSettings()
    ralph: RalphSettings = RalphSettings()
    dashboard: DashboardSettings = DashboardSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _SecretFileSource(settings_cls), _TomlSource(settings_cls)

    @model_validator(mode="after")
    def _check_sandbox_binds(self) -> "StackSettings":
        # A sandbox must never see the stack's own state: refuse binds that hold, or lie inside, any of it.
        # Compared lexically (settings load without touching the disk); the operator writes both sides.
        private = [_normal(path) for path in (self.data_dir, self.vector_path, self.telemetry_path)]
        binds = [*self.ralph.sandbox_ro_binds]
        for template in self.ralph.command_templates.values():
            binds += template.ro_binds
            binds += [Path.home() / path for path in template.home_binds]
        for bind in binds:
            resolved = _normal(bind)
            for path in private:
                if resolved.is_relative_to(path) or path.is_relative_to(resolved):
                    raise ValueError(f"sandbox bind {str(bind)!r} would expose the stack's data ({path})")
        return self

    @property
    def vector_path(self) -> Path:
        return self.vectors.path or self.data_dir / "vectors"

    @property
    def telemetry_path(self) -> Path:
        return self.telemetry.path or self.data_dir / "telemetry"

    @property
    def log_path(self) -> Path:
        return self.observability.log_dir or self.data_dir / "logs"


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the environment variable and what it expects, for start-up failures."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    # A list (e.g. hybrid.backends) is one variable holding JSON: name it, then the item and field inside it.
    index = next((i for i, part in enumerate(location) if isinstance(first["loc"][i], int)), len(location))
    variable = ENV_PREFIX + "__".join(location[:index]).upper() if index else ENV_PREFIX + "*"
    inside = location[index:]
    where = f" (item {inside[0]}" + (f", field {'.'.join(inside[1:])}" if inside[1:] else "") + ")" if inside else ""
    return f"invalid configuration: {variable}{where}: {first['msg']}"


def env_variable(path: str) -> str:
    """The environment variable that sets a settings path: `aidb.peer_api_key` -> `MCP_STACK_AIDB__PEER_API_KEY`.

    Raises:
        ValueError: the path names no field of `StackSettings` (a typo fails where it is written, not later as
            a variable that no process reads).
    """
    model: type[BaseModel] = StackSettings
    parts = path.split(".")
    for depth, part in enumerate(parts, start=1):
        field = model.model_fields.get(part)
        if field is None:
            raise ValueError(f"{path!r} names no setting")
        if depth < len(parts):
            if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
                raise ValueError(f"{path!r} names no setting")
            model = field.annotation
    return ENV_PREFIX + "__".join(parts).upper()


def load_settings(**overrides: Any) -> StackSettings:
    """Load and validate settings once; raises ConfigurationError with a one-line message."""
    try:
        return StackSettings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
