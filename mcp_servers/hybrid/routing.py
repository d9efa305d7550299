"""Routing policy: which backend answers a prompt, and why. Pure functions; `router.py` runs them.

Policy, in order: content flagged secret never goes to a remote backend (unless configured); a forced
preference is honoured; otherwise local first, escalating to remote when the prompt does not fit the local
context window or its complexity estimate passes the (adaptive, per task type) threshold. Backends whose
breaker is open or whose worst-case cost would exceed the day's remaining budget are skipped, with the reason
recorded. The caller tries the candidates in order and falls back on errors.
"""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mcp_servers.shared.config import LlmBackendSettings

TaskType = Literal["code", "reasoning", "extraction", "general"]
TASK_TYPES: tuple[TaskType, ...] = ("code", "reasoning", "extraction", "general")
Preference = Literal["auto", "local", "remote"]
BackendKind = Literal["local", "remote"]

# Per-message framing tokens the chat templates add (role markers, separators).
_MESSAGE_OVERHEAD_TOKENS = 4

# Detectors for content that must not leave the machine. Names are recorded, never the match.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}\b")),
    ("openai_key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b")),
    ("stack_key", re.compile(r"\bmcps_[A-Za-z0-9_-]{16,}\b")),
    (
        "assigned_secret",
        re.compile(r"(?i)\b(?:api[_-]?key|secret|password|passwd|token|access[_-]?key)\b\s*[:=]\s*['\"]?[^\s'\"]{8,}"),
    ),
    ("connection_string", re.compile(r"(?i)\b[a-z][a-z0-9+]*://[^/\s:@]+:[^/\s@]+@")),
)

_CODE_HINTS = re.compile(
    r"```|\bdef |\bclass |\bfunction\b|\bimport |\breturn\b|\bstack ?trace\b|\btraceback\b|\bexception\b|"
    r"\bcompile|\bbug\b|\brefactor|\bregex\b|\bsql\b|\bpython\b|\bjavascript\b|\btypescript\b|\brust\b|[{};]\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_REASONING_HINTS = re.compile(
    r"\b(?:why|prove|proof|derive|analy[sz]e|compare|trade-?offs?|design|architect\w*|plan|strategy|"
    r"step[- ]by[- ]step|reason|evaluate|optimi[sz]e|explain how)\b",
    re.IGNORECASE,
)
_EXTRACTION_HINTS = re.compile(r"\b(?:extract|classify|summari[sz]e|list all|json|fields?|parse|tag)\b", re.IGNORECASE)


def estimate_tokens(text: str) -> int:
    """A cheap upper-leaning token estimate: ~4 characters per token, at least one per word."""
    if not text:
        return 0
    return max(math.ceil(len(text) / 4), len(text.split()))


def estimate_prompt_tokens(messages: Sequence[tuple[str, str]]) -> int:
    """Token estimate of a chat prompt given as (role, content) pairs, with per-message framing."""
    return sum(estimate_tokens(content) + _MESSAGE_OVERHEAD_TOKENS for _, content in messages)


def detect_secret(text: str) -> str | None:
    """The name of the first secret detector that matches `text`, or None."""
    for name, pattern in SECRET_PATTERNS:
        if pattern.search(text):
            return name
    return None


def classify_task(prompt: str, *, wants_json: bool = False) -> TaskType:
    """A coarse task type, the key under which routing thresholds adapt."""
    if wants_json or len(_EXTRACTION_HINTS.findall(prompt)) >= 2:
        return "extraction"
    if len(_CODE_HINTS.findall(prompt)) >= 2:
        return "code"
    if _REASONING_HINTS.search(prompt):
        return "reasoning"
    return "general"


def estimate_complexity(prompt: str, *, wants_json: bool = False) -> float:
    """A 0..1 estimate of how hard the prompt is: length, reasoning cues, code, questions, constraints."""
    tokens = estimate_tokens(prompt)
    length = min(math.log1p(tokens) / math.log1p(2000), 1.0)
    reasoning = min(len(_REASONING_HINTS.findall(prompt)) / 3, 1.0)
    code = min(len(_CODE_HINTS.findall(prompt)) / 6, 1.0)
    questions = min(prompt.count("?") / 4, 1.0)
    constraints = min(len(re.findall(r"(?im)^\s*(?:[-*]|\d+[.)])\s+", prompt)) / 6, 1.0)
    score = 0.35 * length + 0.3 * reasoning + 0.15 * code + 0.1 * questions + 0.1 * constraints
    if wants_json:
        score += 0.05
    return round(min(score, 1.0), 4)


def clamp(value: float, low: float, high: float) -> float:
    """`value` limited to [low, high]."""
    return max(low, min(high, value))


def adapt_threshold(
    current: float,
    *,
    routed_kind: BackendKind,
    outcome: Literal["success", "partial", "failure"],
    complexity: float,
    step: float,
    low: float,
    high: float,
) -> float:
    """The task type's next escalation threshold after one recorded outcome, bounded to [low, high].

    A local failure lowers it (escalate sooner); a local success at or above the current level raises it a
    little (trust local more); a remote success on a prompt just over the threshold nudges it up too, since
    local might have managed. Partial outcomes and remote failures carry no signal about the threshold.
    """
    if routed_kind == "local":
        if outcome == "failure":
            return clamp(current - step, low, high)
        if outcome == "success":
            return clamp(current + step / 2, low, high)
        return clamp(current, low, high)
    if outcome == "success" and complexity < current + 2 * step:
        return clamp(current + step / 4, low, high)
    return clamp(current, low, high)


def worst_case_cost(backend: LlmBackendSettings, prompt_tokens: int, max_tokens: int) -> float:
    """What a call can cost at most: the whole prompt plus every allowed completion token."""
    return (prompt_tokens + max_tokens) / 1000 * backend.cost_per_1k_tokens


def charged_cost(
    backend: LlmBackendSettings,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    *,
    estimated_prompt_tokens: int,
    max_tokens: int,
) -> tuple[float, bool]:
    """(cost, usage_reported): with no reported usage the call is charged its worst case (fail closed)."""
    if prompt_tokens is None or completion_tokens is None:
        return worst_case_cost(backend, estimated_prompt_tokens, max_tokens), False
    return (prompt_tokens + completion_tokens) / 1000 * backend.cost_per_1k_tokens, True


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What the caller asked for, reduced to what the policy needs."""

    prompt_tokens: int
    max_tokens: int
    prefer: Preference
    task_type: TaskType
    complexity: float
    secret: bool


@dataclass(frozen=True, slots=True)
class Skip:
    """A backend the plan leaves out, and why (recorded with the decision)."""

    backend: str
    reason: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call the router made (or skipped) while serving a request."""

    backend: str
    outcome: str  # ok | error | skipped
    reason: str


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """Backends to try in order, the reason for the first choice, and what was left out."""

    candidates: tuple[str, ...]
    reason: str
    threshold: float
    skipped: tuple[Skip, ...] = field(default_factory=tuple)


def plan_route(
    request: RouteRequest,
    backends: Sequence[LlmBackendSettings],
    *,
    threshold: float,
    allow_secrets_remote: bool,
    budget_left: float | None,
    breaker_open: Mapping[str, bool],
) -> RoutePlan:
    """Order the configured backends for one request. `budget_left=None` means no costed backend is in play."""
    skipped: list[Skip] = []
    needed = request.prompt_tokens + request.max_tokens

    def usable(backend: LlmBackendSettings) -> bool:
        if backend.kind == "remote" and request.secret and not allow_secrets_remote:
            skipped.append(Skip(backend.name, "secret_content"))
            return False
        if needed > backend.context_window_tokens:
            skipped.append(Skip(backend.name, "context_overflow"))
            return False
        if breaker_open.get(backend.name, False):
            skipped.append(Skip(backend.name, "breaker_open"))
            return False
        if backend.cost_per_1k_tokens > 0:
            cost = worst_case_cost(backend, request.prompt_tokens, request.max_tokens)
            if budget_left is None or cost > budget_left:
                skipped.append(Skip(backend.name, "budget_exhausted"))
                return False
        return True

    local = [backend.name for backend in backends if backend.kind == "local" and usable(backend)]
    remote = [backend.name for backend in backends if backend.kind == "remote" and usable(backend)]
    local_overflow = any(
        skip.reason == "context_overflow" for skip in skipped if _kind(backends, skip.backend) == "local"
    )
    if request.prefer == "local":
        return RoutePlan(tuple(local), "prefer_local", threshold, tuple(skipped))
    if request.prefer == "remote":
        if remote:
            return RoutePlan(tuple(remote + local), "prefer_remote", threshold, tuple(skipped))
        reason = "secret_kept_local" if request.secret and not allow_secrets_remote else "remote_unavailable"
        return RoutePlan(tuple(local), reason, threshold, tuple(skipped))
    if not local:
        if local_overflow:
            return RoutePlan(tuple(remote), "context_overflow", threshold, tuple(skipped))
        return RoutePlan(tuple(remote), "local_unavailable", threshold, tuple(skipped))
    if request.complexity > threshold and remote:
        return RoutePlan(tuple(remote + local), "complexity_over_threshold", threshold, tuple(skipped))
    return RoutePlan(tuple(local + remote), "local_first", threshold, tuple(skipped))


def _kind(backends: Sequence[LlmBackendSettings], name: str) -> str:
    return next((backend.kind for backend in backends if backend.name == name), "")
