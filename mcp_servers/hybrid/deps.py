"""Hybrid's dependencies, opened once per process by the harness lifespan; background learning runs here too."""

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
from prometheus_client import Counter
from pydantic import SecretStr

from mcp_servers.hybrid.knowledge import ensure_collections
from mcp_servers.hybrid.pipeline import LearningPipeline
from mcp_servers.hybrid.proposals import find_proposals, submit_proposals
from mcp_servers.hybrid.rebuild import rebuild_missing
from mcp_servers.hybrid.router import Backend, Router
from mcp_servers.shared.background import background_tasks
from mcp_servers.shared.config import LlmBackendSettings, StackSettings
from mcp_servers.shared.embeddings.factory import check_dimension, create_embedder
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import StackError
from mcp_servers.shared.harness import Core, ReadinessCheck
from mcp_servers.shared.llm.anthropic import AnthropicChat
from mcp_servers.shared.llm.factory import create_chat_model
from mcp_servers.shared.llm.openai_compat import OpenAICompatibleChat
from mcp_servers.shared.llm.port import ChatModel
from mcp_servers.shared.observability.logging import NOTABLE
from mcp_servers.shared.observability.metrics import StackMetrics
from mcp_servers.shared.peers import Peer, PeerSpec, mcp_endpoint, open_peer
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.factory import create_vector_index
from mcp_servers.shared.vectors.port import VectorIndex

logger = logging.getLogger(__name__)

PROPOSAL_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class HybridDeps:
    """What Hybrid's tools use; owned by the lifespan that created it."""

    settings: StackSettings
    database: Database
    vectors: VectorIndex
    embedder: Embedder
    router: Router
    pipeline: LearningPipeline
    aidb: Peer | None
    ralph: Peer | None
    dataset_dir: Path

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        async def embedder_answers() -> None:
            await check_dimension(self.embedder, self.settings.embedder.dimension)

        return {"vectors": self.vectors.ping, "embedder": embedder_answers}


def _peer(name: str, url: str | None, key: SecretStr | None, timeout_seconds: float) -> PeerSpec | None:
    return PeerSpec(name, mcp_endpoint(url), key, timeout_seconds) if url else None


class RouteMetrics:
    """Routing decisions and LLM call latencies as Prometheus metrics on the server's registry."""

    def __init__(self, metrics: StackMetrics) -> None:
        self._outbound = metrics.outbound_duration
        # Labels are bounded: configured backend names and the router's fixed reason codes.
        self._decisions = Counter(
            "mcpstack_llm_routing_decisions_total",
            "Routing decisions by chosen backend ('none' when no backend answered) and reason",
            ["backend", "reason"],
            registry=metrics.registry,
        )

    def decision(self, backend: str, reason: str) -> None:
        self._decisions.labels(backend, reason).inc()

    def llm_call(self, backend: str, seconds: float) -> None:
        self._outbound.labels(f"llm:{backend}", "chat").observe(seconds)


class LiveBackends:
    """The chat models behind the router, rebuilt when the live `hybrid.backends` setting changes.

    A model whose settings are unchanged is kept (with its connections); a removed one is closed once calls that
    may still hold it have reached their timeout. Owned by Hybrid's lifespan, which calls `close`.
    """

    def __init__(self, core: Core) -> None:
        self._core = core
        self._models: dict[LlmBackendSettings, ChatModel] = {}
        self._retired: dict[LlmBackendSettings, ChatModel] = {}

    async def build(self) -> list[Backend]:
        """Backends for the settings in force, reusing the models of unchanged entries.

        Raises:
            ConfigurationError: a backend's api_key_path cannot be read (nothing is swapped).
        """
        models: dict[LlmBackendSettings, ChatModel] = {}
        try:
            for wanted in self._core.runtime.effective.hybrid.backends:
                models[wanted] = self._models.get(wanted) or await create_chat_model(wanted, self._core.breakers)
        except BaseException:
            for key, model in models.items():
                if key not in self._models:
                    await model.close()
            raise
        self._retired |= {key: model for key, model in self._models.items() if key not in models}
        self._models = models
        backends = []
        for backend_settings, model in models.items():
            assert isinstance(model, OpenAICompatibleChat | AnthropicChat)
            backends.append(Backend(backend_settings, model, model.breaker))
        return backends

    async def follow(self, router: Router) -> None:
        """Swap the router's backends after each live settings change, until cancelled."""
        runtime = self._core.runtime
        version = runtime.version
        async with anyio.create_task_group() as closing:
            while True:
                # Compared with what was built, not with the last version: overrides may have been applied
                # between the lifespan's first build and this loop.
                wanted = runtime.effective.hybrid.backends
                if list(self._models) != wanted:
                    try:
                        router.replace_backends(await self.build())
                    except StackError as exc:  # an unreadable api_key_path: keep routing over what is in force
                        logger.warning("live LLM backends not applied", extra={"error_type": type(exc).__name__})
                    else:
                        logger.info("LLM backends replaced", extra={"backends": [b.name for b in wanted], **NOTABLE})
                        closing.start_soon(self._close_retired)
                version = await runtime.wait_changed(version)

    async def _close_retired(self) -> None:
        retired = dict(self._retired)
        # A call in flight on a retired model ends by that backend's timeout; close it after that.
        await anyio.sleep(max(key.timeout_seconds for key in retired) if retired else 0)
        for key, model in retired.items():
            if self._retired.pop(key, None) is not None:
                await model.close()

    async def close(self) -> None:
        """Close every model (in force or retired)."""
        for model in [*self._models.values(), *self._retired.values()]:
            await model.close()
        self._models, self._retired = {}, {}


async def _catch_up(deps: HybridDeps) -> None:
    """Once at start: rebuild collections that lack points for rows PostgreSQL holds (a restore of a backup taken
    while Hybrid ran, a lost vector directory); the tools serve meanwhile, as AIDB's catch-up does."""
    await rebuild_missing(deps.database, deps.vectors, deps.embedder)


async def _proposal_loop(deps: HybridDeps) -> None:
    while True:
        await anyio.sleep(PROPOSAL_INTERVAL_SECONDS)
        try:
            await submit_proposals(deps.database, deps.ralph, await find_proposals(deps.database))
        except StackError as exc:
            logger.info("optimisation proposals skipped", extra={"error_type": type(exc).__name__})


@contextlib.asynccontextmanager
async def open_hybrid(core: Core, database: Database) -> AsyncIterator[HybridDeps]:
    """Open the embedder, Hybrid's vector namespace, the LLM backends and downstream clients; start learning."""
    settings = core.settings
    hybrid = settings.hybrid
    async with contextlib.AsyncExitStack() as stack:
        embedder = create_embedder(settings, core.breakers)
        stack.push_async_callback(embedder.close)
        await check_dimension(embedder, settings.embedder.dimension)
        # Hybrid's own engine directory (an embedded engine is single-process); on a Qdrant server the
        # `hybrid_` collection prefix keeps the namespaces apart.
        own_vectors = settings.vectors.model_copy(update={"path": settings.vector_path / "hybrid"})
        vectors = create_vector_index(settings.model_copy(update={"vectors": own_vectors}), core.breakers)
        stack.push_async_callback(vectors.close)
        await ensure_collections(vectors, settings.embedder.dimension)
        backends = LiveBackends(core)
        stack.push_async_callback(backends.close)
        router = Router(await backends.build(), hybrid, database, observer=RouteMetrics(core.metrics))
        await router.load_thresholds()
        peers: dict[str, Peer] = {}
        for spec in (
            _peer("aidb", hybrid.aidb_url, hybrid.aidb_api_key, hybrid.aidb_timeout_seconds),
            _peer("ralph", hybrid.ralph_url, hybrid.ralph_api_key, hybrid.ralph_timeout_seconds),
        ):
            if spec is not None:
                peers[spec.name] = await stack.enter_async_context(open_peer(spec, core.breakers))
        aidb, ralph = peers.get("aidb"), peers.get("ralph")
        pipeline = LearningPipeline(
            database,
            settings.telemetry_path,
            lambda: core.runtime.effective.hybrid,
            on_lag=core.metrics.learning_backlog.set,
        )
        deps = HybridDeps(
            settings,
            database,
            vectors,
            embedder,
            router,
            pipeline,
            aidb,
            ralph,
            settings.data_dir / "hybrid" / "datasets",
        )
        background = await stack.enter_async_context(background_tasks("hybrid"))
        if hybrid.pipeline_enabled:
            background.start("learning-pipeline", pipeline.run)
        background.start("catch-up", functools.partial(_catch_up, deps))
        background.start("proposals", lambda: _proposal_loop(deps))
        background.start("llm-backends", functools.partial(backends.follow, router))
        yield deps
