"""learning_stats and `/learning/stats`: one snapshot of routing, learning and the pipeline."""

from mcp_servers.hybrid import store
from mcp_servers.hybrid.deps import HybridDeps
from mcp_servers.hybrid.models import LearningStats, PipelineStats
from mcp_servers.hybrid.pipeline import CONSUMER


async def learning_stats(deps: HybridDeps) -> LearningStats:
    """Counts from PostgreSQL plus this process's pipeline state."""
    pipeline = deps.pipeline
    if not pipeline.state.running:
        # Nobody measures the backlog when the pipeline is off in this process; measure it for the report.
        await pipeline.load()
        await pipeline.measure_lag()
    counts = await store.learning_counts(deps.database, CONSUMER)
    state = pipeline.state
    return LearningStats(
        interactions=counts.interactions,
        interactions_with_outcome=counts.interactions_with_outcome,
        patterns=counts.patterns,
        training_examples=counts.training_examples,
        dataset_files=counts.dataset_files,
        dedup_events=counts.dedup_events,
        routing_decisions=counts.routing_decisions,
        routing_by_reason=counts.routing_by_reason,
        thresholds=deps.router.thresholds(),
        budget_spent_today=counts.spent_today,
        budget_limit=deps.settings.hybrid.daily_budget,
        pipeline=PipelineStats(
            running=state.running,
            events_processed=counts.events_processed,
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
        proposals=counts.proposals,
        llm_backends=[backend.name for backend in deps.settings.hybrid.backends],
    )
