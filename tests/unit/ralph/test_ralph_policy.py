"""The loop's pure decisions: limits, stuck detection, backoff, promise matching."""

from decimal import Decimal

import pytest

from mcp_servers.ralph.completion import promise_fulfilled
from mcp_servers.ralph.domain import REASON_STATUS, CompletionReason, Limits, TaskStatus
from mcp_servers.ralph.policy import LoopState, backoff_seconds, limit_reason, output_fingerprint, stuck_reason


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("all good\n<promise>DONE</promise>\n", True),
        ("<promise> DONE </promise>", True),
        ("<promise>\nDONE\n</promise>", True),
        ("<promise>DONE!</promise>", False),
        ("<promise>NOT DONE</promise>", False),
        ("<promise>done</promise>", False),
        ("DONE", False),
        ("<promise>DONE", False),
        ("<promise>almost</promise> then <promise>DONE</promise>", True),
    ],
)
def test_promise_must_match_exactly_inside_the_tags(output: str, expected: bool) -> None:
    assert promise_fulfilled(output, "DONE") is expected


def test_only_success_reasons_map_to_completed() -> None:
    completed = {reason for reason, status in REASON_STATUS.items() if status is TaskStatus.COMPLETED}
    assert completed == {CompletionReason.PROMISE_FOUND, CompletionReason.VERIFY_PASSED}
    assert set(REASON_STATUS) == set(CompletionReason)


def test_limits_in_order_iterations_time_cost() -> None:
    limits = Limits(max_iterations=3, max_seconds=10.0, max_cost_usd=Decimal("1.00"))

    def reason(done: int = 0, elapsed: float = 0.0, cost: str = "0", known: bool = True) -> CompletionReason | None:
        return limit_reason(
            limits, iterations_done=done, elapsed_seconds=elapsed, cost_usd=Decimal(cost), cost_known=known
        )

    assert reason() is None
    assert reason(done=3) is CompletionReason.MAX_ITERATIONS
    assert reason(elapsed=10.0) is CompletionReason.MAX_SECONDS
    assert reason(cost="1.00") is CompletionReason.MAX_COST
    assert reason(cost="0.10", known=False) is CompletionReason.COST_UNREPORTED


def test_unknown_cost_without_a_cap_is_fine() -> None:
    limits = Limits(max_iterations=5)
    assert limit_reason(limits, iterations_done=1, elapsed_seconds=1e6, cost_usd=Decimal(0), cost_known=False) is None


def test_repeated_output_counts_consecutive_identical_outputs_only() -> None:
    state = LoopState()
    a, b = output_fingerprint("same  output\n"), output_fingerprint("other")
    for fingerprint in (a, a, b, a, a):
        state = state.after(succeeded=True, fingerprint=fingerprint)
    assert state.repeat_count == 2
    state = state.after(succeeded=True, fingerprint=output_fingerprint("same output"))  # whitespace-normalised
    assert stuck_reason(state, repeat_threshold=3, max_failures=5) is CompletionReason.REPEATED_OUTPUT


def test_no_output_never_counts_as_a_repeat() -> None:
    state = LoopState()
    for _ in range(5):
        state = state.after(succeeded=True, fingerprint=None)
    assert stuck_reason(state, repeat_threshold=2, max_failures=5) is None


def test_consecutive_failures_reset_on_success() -> None:
    state = LoopState()
    for succeeded in (False, False, True, False, False):
        state = state.after(succeeded=succeeded, fingerprint=None)
    assert state.consecutive_failures == 2
    assert stuck_reason(state, repeat_threshold=3, max_failures=3) is None
    state = state.after(succeeded=False, fingerprint=None)
    assert stuck_reason(state, repeat_threshold=3, max_failures=3) is CompletionReason.CONSECUTIVE_FAILURES


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    delays = [backoff_seconds(failures, base=0.5, cap=3.0) for failures in range(6)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_seconds(10_000, base=1.0, cap=60.0) == 60.0
    assert backoff_seconds(3, base=0.0, cap=60.0) == 0.0
