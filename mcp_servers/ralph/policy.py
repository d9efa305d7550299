"""The loop's decisions, as pure functions: limits, stuck detection and backoff after failed iterations."""

import hashlib
from dataclasses import dataclass
from decimal import Decimal

from mcp_servers.ralph.domain import CompletionReason, Limits


def output_fingerprint(output: str) -> str:
    """SHA-256 of the output with whitespace runs collapsed, so reflowed but identical output compares equal."""
    return hashlib.sha256(" ".join(output.split()).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class LoopState:
    """What stuck detection remembers between iterations (stored with the task, so it survives a crash)."""

    consecutive_failures: int = 0
    repeat_count: int = 0
    last_output_sha256: str | None = None

    def after(self, *, succeeded: bool, fingerprint: str | None) -> "LoopState":
        """The state after one more iteration; `fingerprint` None means no output was recorded."""
        failures = 0 if succeeded else self.consecutive_failures + 1
        if fingerprint is not None and fingerprint == self.last_output_sha256:
            repeats = self.repeat_count + 1
        else:
            repeats = 1 if fingerprint is not None else 0
        return LoopState(failures, repeats, fingerprint)


def stuck_reason(state: LoopState, *, repeat_threshold: int, max_failures: int) -> CompletionReason | None:
    """REPEATED_OUTPUT after the same output `repeat_threshold` times in a row, CONSECUTIVE_FAILURES after
    `max_failures` failed iterations in a row; None while the loop still makes progress."""
    if state.repeat_count >= repeat_threshold:
        return CompletionReason.REPEATED_OUTPUT
    if state.consecutive_failures >= max_failures:
        return CompletionReason.CONSECUTIVE_FAILURES
    return None


def backoff_seconds(consecutive_failures: int, *, base: float, cap: float) -> float:
    """Delay before the next iteration: 0 after a success, then base, 2*base, 4*base, ... capped."""
    if consecutive_failures <= 0 or base <= 0:
        return 0.0
    # Exponent bounded so the float never overflows whatever the failure count.
    return float(min(cap, base * 2 ** min(consecutive_failures - 1, 62)))


def limit_reason(
    limits: Limits, *, iterations_done: int, elapsed_seconds: float, cost_usd: Decimal, cost_known: bool
) -> CompletionReason | None:
    """The limit that forbids another iteration, or None.

    Cost fails closed: with a cost cap set, an iteration whose backend reported no usage ends the task, since
    the cap could no longer be guaranteed.
    """
    if iterations_done >= limits.max_iterations:
        return CompletionReason.MAX_ITERATIONS
    if limits.max_seconds is not None and elapsed_seconds >= limits.max_seconds:
        return CompletionReason.MAX_SECONDS
    if limits.max_cost_usd is not None:
        if not cost_known:
            return CompletionReason.COST_UNREPORTED
        if cost_usd >= limits.max_cost_usd:
            return CompletionReason.MAX_COST
    return None
