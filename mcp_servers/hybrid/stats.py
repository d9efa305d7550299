"""learning_stats and `/learning/stats`: one snapshot of routing, learning and the pipeline."""

from mcp_servers.hybrid.deps import HybridDeps
from mcp_servers.hybrid.models import LearningStats, PipelineStats

_COUNTS = """
SELECT
  (SELECT count(*) FROM hybrid_interactions) AS interactions,
  (SELECT count(*) FROM hybrid_interactions WHERE outcome IS NOT NULL) AS with_outcome,
  (SELECT count(*) FROM hybrid_patterns) AS patterns,
  (SELECT count(*) FROM hybrid_training_examples) AS examples,
  (SELECT count(*) FROM hybrid_processed_events) AS dedup_events,
  (SELECT count(*) FROM hybrid_routing_decisions) AS decisions,
  (SELECT count(*) FROM hybrid_proposals) AS proposals,
  (SELECT coalesce(sum(spent), 0) FROM hybrid_budget WHERE day = (now() AT TIME ZONE 'utc')::date) AS spent
"""


async def learning_stats(deps: HybridDeps) -> LearningStats:
    """Counts from PostgreSQL plus this process's pipeline state."""
    pipeline = deps.pipeline
    if not pipeline.state.running:
        # Nobody measures the backlog when the pipeline is off in this process; measure it for the report.
        await pipeline.load()
        await pipeline.measure_lag()
    async with deps.database.connection() as conn:
        counts = await conn.fetchrow(_COUNTS)
        reasons = await conn.fetch("SELECT reason, count(*) AS n FROM hybrid_routing_decisions GROUP BY reason")
        exports = await conn.fetch("SELECT format, examples FROM hybrid_dataset_exports")
        durable = await conn.fetchrow(
            "SELECT events_processed FROM hybrid_pipeline_checkpoints WHERE consumer = 'learning'"
        )
    assert counts is not None
    state = pipeline.state
    return LearningStats(
        interactions=counts["interactions"],
        interactions_with_outcome=counts["with_outcome"],
        patterns=counts["patterns"],
        training_examples=counts["examples"],
        dataset_files={row["format"]: row["examples"] for row in exports},
        dedup_events=counts["dedup_events"],
        routing_decisions=counts["decisions"],
        routing_by_reason={row["reason"]: row["n"] for row in reasons},
        thresholds=deps.router.thresholds(),
        budget_spent_today=float(counts["spent"]),
        budget_limit=deps.settings.hybrid.daily_budget,
        pipeline=PipelineStats(
            running=state.running,
            events_processed=int(durable["events_processed"]) if durable else 0,
            duplicates_skipped=state.duplicates_skipped,
            checkpoint={"seq": state.checkpoint.seq, "offset": state.checkpoint.offset},
            checkpoint_updated_at=state.checkpoint_updated_at,
            checkpoints_written=state.checkpoints_written,
            lag_bytes=state.lag_bytes,
            backpressure=state.backpressure,
            backpressure_threshold_bytes=pipeline.settings.backpressure_bytes,
            shed_events=state.shed_events,
            skipped_lines=pipeline.reader.skipped_lines,
        ),
        proposals=counts["proposals"],
    )
