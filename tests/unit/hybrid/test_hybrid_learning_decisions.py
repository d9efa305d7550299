"""The pure decisions Hybrid's store writes: interaction classification, outcome assessment, telemetry batches
and optimisation proposals, all without a database."""

import dataclasses
import json
import uuid

import pytest

from mcp_servers.hybrid.learning import (
    InteractionRecord,
    OutcomeName,
    assess_outcome,
    content_hash,
    example_messages,
    new_interaction,
    reusability,
    training_example,
    value_score,
)
from mcp_servers.hybrid.models import TrackRequest
from mcp_servers.hybrid.pipeline import EVENT_NAMESPACE, _Batch
from mcp_servers.hybrid.proposals import MIN_CALLS, proposals_from
from mcp_servers.hybrid.store import ToolStats
from mcp_servers.shared.config import HybridSettings
from mcp_servers.shared.errors import Conflict
from mcp_servers.shared.telemetry.events import TelemetryEvent

SETTINGS = HybridSettings()
ANSWER = "Use sorted(items, key=len).\n1. call sorted\n2. pass key=len\nPrefer sorted over list.sort."


BASE = InteractionRecord(
    id=uuid.uuid4(),
    query="how do I sort a python list by length?",
    response=ANSWER,
    task_type="code",
    complexity=0.4,
    secret=False,
    outcome=None,
    pattern_id=None,
    routed_kind=None,
)


def test_new_interaction_is_classified_and_flagged_secret_by_request_or_detector() -> None:
    plain = new_interaction(
        TrackRequest(query="def f(): return 1; fix this python bug", response="ok", agent_type="local", model_used="m")
    )
    assert (plain.task_type, plain.secret, plain.context_ids) == ("code", False, ())
    flagged = new_interaction(
        TrackRequest(
            query="q", response="a", agent_type="local", model_used="m", context_ids=["aidb:1#0"], contains_secrets=True
        )
    )
    assert flagged.secret and flagged.context_ids == ("aidb:1#0",)
    detected = new_interaction(
        TrackRequest(query="my key is AKIAABCDEFGHIJKLMNOP", response="a", agent_type="remote", model_used="m")
    )
    assert detected.secret
    assert plain.id != flagged.id


def test_training_example_hash_is_the_content_hash_of_its_messages() -> None:
    example = training_example("q ", "a")
    assert example.content_hash == content_hash(example_messages("q", "a"))
    assert json.loads(example.messages_json) == example_messages("q ", "a")


def test_success_is_scored_and_teaches_an_example_but_moves_no_threshold_when_not_routed() -> None:
    record = BASE
    assessed = assess_outcome(record, outcome="success", feedback=1.0, novelty=0.7, settings=SETTINGS)
    expected = value_score(
        outcome="success",
        feedback=1.0,
        reusability=reusability(record.query, record.response),
        complexity=0.4,
        novelty=0.7,
    )
    assert assessed.value_score == expected
    assert assessed.example == training_example(record.query, record.response)
    assert assessed.threshold is None


@pytest.mark.parametrize(
    ("outcome", "feedback", "secret"), [("failure", None, False), ("success", -0.5, False), ("success", 1.0, True)]
)
def test_failures_disliked_answers_and_secrets_teach_no_example(
    outcome: OutcomeName, feedback: float | None, secret: bool
) -> None:
    assessed = assess_outcome(
        dataclasses.replace(BASE, secret=secret),
        outcome=outcome,
        feedback=feedback,
        novelty=0.5,
        settings=SETTINGS,
    )
    assert assessed.example is None


def test_only_the_first_outcome_of_a_routed_interaction_moves_its_threshold() -> None:
    first = assess_outcome(
        dataclasses.replace(BASE, routed_kind="local"), outcome="failure", feedback=None, novelty=0.5, settings=SETTINGS
    )
    assert first.threshold is not None
    assert first.threshold.task_type == "code" and first.threshold.initial == SETTINGS.complexity_threshold
    assert first.threshold.apply(0.6) == pytest.approx(0.6 - SETTINGS.threshold_step)
    assert first.threshold.apply(SETTINGS.complexity_threshold_min) == SETTINGS.complexity_threshold_min
    recorded = dataclasses.replace(BASE, routed_kind="local", outcome="failure", value_score=0.2)
    repeated = assess_outcome(recorded, outcome="failure", feedback=None, novelty=0.9, settings=SETTINGS)
    assert repeated.repeat and repeated.threshold is None and repeated.example is None
    assert repeated.value_score == 0.2  # the recorded score, not a new one (novelty changed)


@pytest.mark.parametrize(("outcome", "feedback"), [("success", None), ("failure", 0.5)])
def test_a_different_second_outcome_is_refused_not_rescored(outcome: OutcomeName, feedback: float | None) -> None:
    recorded = dataclasses.replace(BASE, routed_kind="local", outcome="failure", value_score=0.2)
    with pytest.raises(Conflict, match="already has outcome 'failure'"):
        assess_outcome(recorded, outcome=outcome, feedback=feedback, novelty=0.5, settings=SETTINGS)


def event(event_id: str, kind: str, **data: object) -> TelemetryEvent:
    return TelemetryEvent(id=event_id, ts="2026-01-01T00:00:00Z", pid=1, source="aidb", type=kind, data=dict(data))


def test_a_batch_sums_tool_calls_derives_interaction_ids_and_sheds_only_tool_calls() -> None:
    batch = _Batch()
    batch.add(event("e1", "tool_call", tool="search", duration_seconds=0.5), shed=False)
    batch.add(event("e2", "tool_call", tool="search", outcome="tool_error", duration_seconds=1.5), shed=False)
    batch.add(event("e3", "interaction", query="q?", response=ANSWER, outcome="success", tokens_used=7), shed=False)
    batch.add(event("e4", "interaction", query="q2?", response="no", outcome="failure"), shed=True)
    batch.add(event("e5", "tool_call", tool="search"), shed=True)
    rows = batch.rows()
    assert [(s.server, s.tool, s.calls, s.errors, s.duration_sum) for s in rows.tool_stats] == [
        ("aidb", "search", 2, 1, 2.0)
    ]
    assert batch.shed == 1
    assert [i.id for i in rows.interactions] == [uuid.uuid5(EVENT_NAMESPACE, "e3"), uuid.uuid5(EVENT_NAMESPACE, "e4")]
    assert rows.interactions[0].tokens_used == 7 and rows.interactions[0].value_score is not None
    assert [(e.event_id, e.example) for e in rows.examples] == [("e3", training_example("q?", ANSWER))]


def test_proposals_come_from_error_rates_latency_and_ralph_iteration_limits() -> None:
    stats = [
        ToolStats("aidb", "search", MIN_CALLS, MIN_CALLS // 2, 0.1),
        ToolStats("aidb", "ingest", MIN_CALLS, 0, 9.0),
        ToolStats("aidb", "get", MIN_CALLS, 1, 0.1),
        ToolStats("ralph", "task:claude", MIN_CALLS, MIN_CALLS // 2, 10.0),
    ]
    assert [(p.kind, p.subject) for p in proposals_from(stats)] == [
        ("tool_error_rate", "aidb/search"),
        ("tool_latency", "aidb/ingest"),
        ("ralph_iteration_limit", "ralph/task:claude"),
    ]
