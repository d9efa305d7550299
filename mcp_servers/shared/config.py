"""Typed settings for the whole stack: one root model, one nested model per concern.

Sources, highest first: init kwargs, environment (`MCP_STACK_` prefix, `__` for nesting, e.g.
`MCP_STACK_AIDB__SEARCH_LIMIT`), `*_FILE` secrets (`MCP_STACK_POSTGRES__DSN_FILE=/run/secrets/dsn`),
the TOML file named by `MCP_STACK_CONFIG_FILE`, then defaults.
"""

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mcp_servers.shared.errors import ConfigurationError

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
    max_tokens: int = Field(default=256, ge=16, le=8192, description="truncate each text to this many tokens")
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
    """Token bucket per principal and tool."""

    enabled: bool = True
    calls_per_minute: float = Field(default=600.0, gt=0, le=1_000_000)
    burst: int = Field(default=60, ge=1, le=100_000)
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
    allowed_hosts: list[str] = Field(default_factory=list, description="extra Host headers to accept")
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024**3)


class ObservabilitySettings(_Section):
    """Logs, metrics and traces."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP endpoint; unset = no export")


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
        default_factory=dict, description="MCP servers (name -> URL or stdio command) AIDB indexes at start-up"
    )
    peer_api_key: SecretStr | None = Field(
        default=None, description="bearer key AIDB sends to HTTP servers it registers (needs their read scope)"
    )

    @model_validator(mode="after")
    def _check_overlap(self) -> "AidbSettings":
        if self.chunk_overlap_tokens * 2 > self.chunk_tokens:
            raise ValueError("chunk_overlap_tokens must be at most half of chunk_tokens")
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


class RalphSettings(_Section):
    """Agent loop: workers, leases, backends, limits and the sandbox for the commands it runs."""

    workers: int = Field(default=4, ge=0, le=256, description="concurrent tasks per process; 0 = serve only, no worker")
    lease_seconds: float = Field(default=30.0, ge=1, le=3600, description="a dead worker's task is resumed after this")
    control_poll_seconds: float = Field(
        default=0.4, ge=0.05, le=0.5, description="how often workers look for stop requests and new tasks"
    )
    workspace_roots: list[Path] = Field(default_factory=list, description="task workspaces must lie under one of these")
    command_templates: dict[str, list[str]] = Field(
        default_factory=dict,
        description='argv per agent; backend "command" uses "default", "command:NAME" uses NAME; '
        "{prompt} {task_id} {iteration} {workspace} are substituted, the prompt is also sent on stdin",
    )
    allow_task_commands: bool = Field(
        default=True, description="accept verify_command and hooks from callers with the write scope"
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

    @model_validator(mode="after")
    def _check_backoff(self) -> "RalphSettings":
        if self.backoff_base_seconds > self.backoff_max_seconds:
            raise ValueError("backoff_base_seconds must not exceed backoff_max_seconds")
        for name, argv in self.command_templates.items():
            if not argv or not argv[0]:
                raise ValueError(f"command_templates[{name!r}] must name a program")
        return self


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
    login_attempts_per_minute: float = Field(default=10.0, gt=0, le=10_000, description="per client and per user")
    login_burst: int = Field(default=5, ge=1, le=1000)
    sample_seconds: float = Field(default=2.0, ge=0.1, le=3600, description="how often server status is sampled")
    history_samples: int = Field(default=180, ge=2, le=100_000, description="samples kept for the charts")
    request_timeout_seconds: float = Field(default=10.0, ge=0.1, le=600)

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

    @property
    def vector_path(self) -> Path:
        return self.vectors.path or self.data_dir / "vectors"

    @property
    def telemetry_path(self) -> Path:
        return self.telemetry.path or self.data_dir / "telemetry"


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the environment variable and what it expects, for start-up failures."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"] if not str(part).isdigit()]
    variable = ENV_PREFIX + "__".join(location).upper() if location else ENV_PREFIX + "*"
    return f"invalid configuration: {variable}: {first['msg']}"


def load_settings(**overrides: Any) -> StackSettings:
    """Load and validate settings once; raises ConfigurationError with a one-line message."""
    try:
        return StackSettings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
