"""The router: plans a route (routing.py), calls backends in order with fallback, records every decision.

Each decision (chosen backend, reason, every attempt, tokens, cost) is written to PostgreSQL together with the
day's spend and, for route_query, the interaction it produced. No connection is held during an LLM call.
"""

import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_servers.hybrid import store
from mcp_servers.hybrid.routing import (
    TASK_TYPES,
    Attempt,
    Preference,
    RouteRequest,
    TaskType,
    charged_cost,
    classify_task,
    detect_secret,
    estimate_complexity,
    estimate_prompt_tokens,
    plan_route,
    worst_case_cost,
)
from mcp_servers.shared.config import HybridSettings, LlmBackendSettings
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest
from mcp_servers.shared.llm.port import NO_LLM_CONFIGURED, ChatMessage, ChatModel, Completion
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.resilience.breaker import BreakerState, CircuitBreaker

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backend:
    """A configured backend: its settings, its client and its breaker (the client's own)."""

    settings: LlmBackendSettings
    model: ChatModel
    breaker: CircuitBreaker


@dataclass(frozen=True, slots=True)
class RouteOutcome:
    """What a routed call produced, and how it was decided."""

    completion: Completion
    backend: Backend
    reason: str
    attempts: tuple[Attempt, ...]
    task_type: TaskType
    complexity: float
    threshold: float
    secret: bool
    prompt_tokens_estimate: int
    cost: float
    decision_id: int
    interaction_id: uuid.UUID | None
    overhead_seconds: float


class RouteObserver(Protocol):
    """Receives each decision and each backend call (the server turns them into metrics)."""

    def decision(self, backend: str, reason: str) -> None: ...

    def llm_call(self, backend: str, seconds: float) -> None: ...


def seconds_until_utc_midnight(now: dt.datetime | None = None) -> float:
    """When today's budget resets."""
    now = now or dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


class Router:
    """Routes chat requests over the configured backends; one per process, owned by Hybrid's lifespan."""

    def __init__(
        self,
        backends: Sequence[Backend],
        settings: HybridSettings,
        database: Database,
        *,
        observer: RouteObserver | None = None,
    ) -> None:
        self.backends = {backend.settings.name: backend for backend in backends}
        self._settings = settings
        self._database = database
        self._thresholds: dict[str, float] = {}
        self._observer = observer

    def replace_backends(self, backends: Sequence[Backend]) -> None:
        """Route over `backends` from the next call on (a live settings change); calls in flight keep theirs."""
        self.backends = {backend.settings.name: backend for backend in backends}

    async def load_thresholds(self) -> None:
        """Read the adapted thresholds (missing task types use the configured initial value)."""
        self._thresholds = await store.load_thresholds(self._database)

    def threshold(self, task_type: str) -> float:
        """The current escalation threshold of a task type."""
        return self._thresholds.get(task_type, self._settings.complexity_threshold)

    def thresholds(self) -> dict[str, float]:
        """Every task type's current threshold."""
        return {task_type: self.threshold(task_type) for task_type in TASK_TYPES}

    def set_threshold(self, task_type: str, value: float) -> None:
        """Adopt a threshold just written to PostgreSQL by the learning side."""
        self._thresholds[task_type] = value

    async def _budget_left(self) -> float:
        return self._settings.daily_budget - await store.spent_today(self._database)

    async def route(
        self,
        messages: Sequence[ChatMessage],
        *,
        prefer: Preference,
        max_tokens: int,
        temperature: float,
        json_schema: Mapping[str, Any] | None = None,
        secret: bool = False,
        record_interaction: bool = True,
    ) -> RouteOutcome:
        """Plan, call with fallback, record. `secret=True` marks the content secret whatever the detectors say.

        Raises:
            InvalidRequest: no backend is configured, or the prompt fits no backend's context window.
            DependencyUnavailable: every candidate failed, or only budget-exhausted backends were left.
        """
        started = time.perf_counter()
        backends = self.backends  # one set per call, whatever a live settings change swaps in meanwhile
        if not backends:
            raise InvalidRequest(
                f"{NO_LLM_CONFIGURED}; add one in the dashboard's live configuration (hybrid.backends), "
                "set MCP_STACK_HYBRID__BACKENDS, or start the stack with a local model (make run LLM=1)"
            )
        prompt_text = "\n".join(message.content for message in messages)
        user_text = "\n".join(message.content for message in messages if message.role == "user")
        wants_json = json_schema is not None
        is_secret = secret or detect_secret(prompt_text) is not None
        task_type = classify_task(user_text, wants_json=wants_json)
        request = RouteRequest(
            prompt_tokens=estimate_prompt_tokens([(message.role, message.content) for message in messages]),
            max_tokens=max_tokens,
            prefer=prefer,
            task_type=task_type,
            complexity=estimate_complexity(user_text, wants_json=wants_json),
            secret=is_secret,
        )
        plan = plan_route(
            request,
            [backend.settings for backend in backends.values()],
            threshold=self.threshold(task_type),
            allow_secrets_remote=self._settings.allow_secrets_remote,
            # The budget is checked per costed attempt below (most calls never reach one).
            budget_left=math.inf,
            breaker_open={name: backend.breaker.state is BreakerState.OPEN for name, backend in backends.items()},
        )
        attempts = [Attempt(skip.backend, "skipped", skip.reason) for skip in plan.skipped]
        llm_seconds = 0.0
        first_rejection: InvalidRequest | None = None
        budget_left: float | None = None
        for name in plan.candidates:
            backend = backends[name]
            if backend.settings.cost_per_1k_tokens > 0:
                left = budget_left = await self._budget_left()
                if worst_case_cost(backend.settings, request.prompt_tokens, max_tokens) > left:
                    attempts.append(Attempt(name, "skipped", "budget_exhausted"))
                    continue
            call_started = time.perf_counter()
            try:
                completion = await backend.model.complete(
                    messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    json_schema=json_schema,
                    timeout_seconds=backend.settings.timeout_seconds,
                )
            except DependencyUnavailable as exc:
                llm_seconds += self._observe_call(name, call_started)
                attempts.append(Attempt(name, "error", _error_reason(exc)))
                continue
            except InvalidRequest as exc:
                llm_seconds += self._observe_call(name, call_started)
                attempts.append(Attempt(name, "error", "rejected"))
                first_rejection = first_rejection or exc
                continue
            llm_seconds += self._observe_call(name, call_started)
            attempts.append(Attempt(name, "ok", "answered"))
            reason = plan.reason if len(attempts) == len(plan.skipped) + 1 else f"fallback_after_{plan.reason}"
            return await self._record_success(
                request,
                plan.threshold,
                reason,
                backend,
                completion,
                attempts,
                messages,
                started,
                llm_seconds,
                record_interaction,
            )
        await self._record_failure(request, plan.threshold, plan.reason, attempts)
        if self._observer is not None:
            self._observer.decision("none", plan.reason)
        raise self._no_backend_error(request, attempts, first_rejection, budget_left)

    def _observe_call(self, backend: str, started: float) -> float:
        seconds = time.perf_counter() - started
        if self._observer is not None:
            self._observer.llm_call(backend, seconds)
        return seconds

    def _no_backend_error(
        self,
        request: RouteRequest,
        attempts: Sequence[Attempt],
        rejection: InvalidRequest | None,
        budget_left: float | None,
    ) -> Exception:
        reasons = {attempt.reason for attempt in attempts}
        budget_state = (
            "daily budget exhausted"
            if budget_left is None or budget_left <= 0
            else f"the worst case of this request (max_tokens={request.max_tokens}) would exceed the "
            f"{budget_left:.4g} left of the daily budget; lower max_tokens"
        )
        summary = ", ".join(f"{attempt.backend}: {attempt.reason}" for attempt in attempts) or "no candidates"
        if attempts and reasons == {"context_overflow"}:
            largest = max(backend.settings.context_window_tokens for backend in self.backends.values())
            return InvalidRequest(
                f"the prompt (~{request.prompt_tokens} tokens) plus max_tokens={request.max_tokens} fits no "
                f"backend's context window (largest {largest}); shorten the prompt or lower max_tokens"
            )
        if rejection is not None and all(
            attempt.outcome != "error" or attempt.reason == "rejected" for attempt in attempts
        ):
            return rejection
        if "budget_exhausted" in reasons and not any(attempt.outcome == "error" for attempt in attempts):
            return DependencyUnavailable(
                "llm", retry_after_seconds=seconds_until_utc_midnight(), reason=f"{budget_state} ({summary})"
            )
        if request.prefer == "local" and not any(
            backend.settings.kind == "local" for backend in self.backends.values()
        ):
            return InvalidRequest("prefer=local but no local backend is configured; use prefer=auto")
        return DependencyUnavailable("llm", retry_after_seconds=5.0, reason=f"no backend answered ({summary})")

    async def _record_success(
        self,
        request: RouteRequest,
        threshold: float,
        reason: str,
        backend: Backend,
        completion: Completion,
        attempts: Sequence[Attempt],
        messages: Sequence[ChatMessage],
        started: float,
        llm_seconds: float,
        record_interaction: bool,
    ) -> RouteOutcome:
        cost, usage_reported = charged_cost(
            backend.settings,
            completion.prompt_tokens,
            completion.completion_tokens,
            estimated_prompt_tokens=request.prompt_tokens,
            max_tokens=request.max_tokens,
        )
        interaction_id = uuid.uuid4() if record_interaction else None
        query = "\n".join(message.content for message in messages if message.role == "user")
        decision_id = await store.record_route_success(
            self._database,
            _decision(request, threshold, reason, attempts),
            store.RoutedAnswer(
                backend=backend.settings.name,
                backend_kind=backend.settings.kind,
                completion=completion,
                usage_reported=usage_reported,
                cost=cost,
                charged=cost > 0 or not usage_reported,
                interaction_id=interaction_id,
                query=query,
            ),
            synchronous_commit=not self._settings.async_commit_records,
        )
        if self._observer is not None:
            self._observer.decision(backend.settings.name, reason)
        if not usage_reported:
            logger.warning("backend reported no usage; charged worst case", extra={"backend": backend.settings.name})
        overhead = max(time.perf_counter() - started - llm_seconds, 0.0)
        return RouteOutcome(
            completion=completion,
            backend=backend,
            reason=reason,
            attempts=tuple(attempts),
            task_type=request.task_type,
            complexity=request.complexity,
            threshold=threshold,
            secret=request.secret,
            prompt_tokens_estimate=request.prompt_tokens,
            cost=cost,
            decision_id=decision_id,
            interaction_id=interaction_id,
            overhead_seconds=overhead,
        )

    async def _record_failure(
        self, request: RouteRequest, threshold: float, reason: str, attempts: Sequence[Attempt]
    ) -> None:
        await store.record_route_failure(self._database, _decision(request, threshold, reason, attempts))


def _decision(request: RouteRequest, threshold: float, reason: str, attempts: Sequence[Attempt]) -> store.RouteDecision:
    return store.RouteDecision(
        task_type=request.task_type,
        prefer=request.prefer,
        reason=reason,
        attempts=tuple(attempts),
        complexity=request.complexity,
        threshold=threshold,
        prompt_tokens_estimate=request.prompt_tokens,
        secret=request.secret,
    )


def _error_reason(exc: DependencyUnavailable) -> str:
    text = str(exc)
    for reason in ("circuit open", "circuit half-open", "timed out", "connection failed", "malformed response"):
        if reason in text:
            return reason.replace(" ", "_").replace("-", "_")
    return "http_error" if "HTTP" in text else "unavailable"
