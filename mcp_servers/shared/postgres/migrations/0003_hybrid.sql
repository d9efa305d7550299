-- Hybrid (LLM coordinator): interactions and outcomes, routing decisions, adaptive thresholds, budget,
-- patterns, the telemetry pipeline's checkpoint and dedup, and the append-only fine-tuning dataset.

CREATE TABLE hybrid_interactions (
    id             uuid PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL,                 -- track_interaction | route_query | telemetry
    query          text NOT NULL,
    response       text NOT NULL,
    agent_type     text NOT NULL,
    model_used     text NOT NULL,
    context_ids    text[] NOT NULL DEFAULT '{}',
    tokens_used    integer NULL,
    latency_ms     double precision NULL,
    task_type      text NOT NULL,
    complexity     real NOT NULL,
    secret         boolean NOT NULL DEFAULT false, -- never exported, never sent to a remote extractor
    decision_id    bigint NULL,
    outcome        text NULL CHECK (outcome IN ('success', 'partial', 'failure')),
    user_feedback  real NULL CHECK (user_feedback BETWEEN -1 AND 1),
    outcome_at     timestamptz NULL,
    value_score    real NULL,
    pattern_id     uuid NULL
);
CREATE INDEX hybrid_interactions_created_idx ON hybrid_interactions (created_at DESC);

CREATE TABLE hybrid_routing_decisions (
    id                bigserial PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    task_type         text NOT NULL,
    prefer            text NOT NULL,
    backend           text NULL,                  -- NULL when no backend could answer
    backend_kind      text NULL,
    reason            text NOT NULL,
    attempts          jsonb NOT NULL,             -- [{backend, outcome, reason}] in order
    complexity        real NOT NULL,
    threshold         real NOT NULL,
    prompt_tokens_estimate integer NOT NULL,
    prompt_tokens     integer NULL,
    completion_tokens integer NULL,
    usage_reported    boolean NOT NULL DEFAULT false,
    cost              double precision NOT NULL DEFAULT 0,
    latency_seconds   double precision NULL,
    secret            boolean NOT NULL,
    ok                boolean NOT NULL
);
CREATE INDEX hybrid_routing_decisions_at_idx ON hybrid_routing_decisions (at DESC);

CREATE TABLE hybrid_thresholds (
    task_type            text PRIMARY KEY,
    complexity_threshold real NOT NULL,
    samples              integer NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Spend per UTC day and backend; calls whose backend reported no usage are charged their worst case.
CREATE TABLE hybrid_budget (
    day                 date NOT NULL,
    backend             text NOT NULL,
    spent               double precision NOT NULL DEFAULT 0,
    calls               integer NOT NULL DEFAULT 0,
    unreported_calls    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, backend)
);

CREATE TABLE hybrid_patterns (
    id                  uuid PRIMARY KEY,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    problem_type        text NOT NULL,
    approach            text NOT NULL,
    skills              text[] NOT NULL DEFAULT '{}',
    pattern             text NOT NULL,
    extractor           text NOT NULL,            -- llm:<backend> | deterministic
    support             integer NOT NULL DEFAULT 1,
    value_score         real NOT NULL,
    interaction_ids     uuid[] NOT NULL DEFAULT '{}'
);

-- The pipeline's position in the telemetry stream, committed in the same transaction as its dataset rows.
CREATE TABLE hybrid_pipeline_checkpoints (
    consumer          text PRIMARY KEY,
    position          jsonb NOT NULL,
    events_processed  bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Persistent dedup: an event id is processed at most once, across restarts and replicas.
CREATE TABLE hybrid_processed_events (
    event_id     text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Training examples, deduplicated by the hash of their canonical messages.
CREATE TABLE hybrid_training_examples (
    id              bigserial PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    content_hash    bytea NOT NULL UNIQUE,
    messages        jsonb NOT NULL,
    interaction_id  uuid NULL,
    event_id        text NULL,
    value_score     real NULL
);

-- What each exported JSONL file holds: bytes beyond `bytes` were never committed and are cut before appending.
CREATE TABLE hybrid_dataset_exports (
    format          text PRIMARY KEY,
    last_example_id bigint NOT NULL DEFAULT 0,
    examples        bigint NOT NULL DEFAULT 0,
    bytes           bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Rolled-up telemetry per server and tool (what the optimiser reads).
CREATE TABLE hybrid_tool_stats (
    server          text NOT NULL,
    tool            text NOT NULL,
    calls           bigint NOT NULL DEFAULT 0,
    errors          bigint NOT NULL DEFAULT 0,
    duration_sum    double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (server, tool)
);

CREATE TABLE hybrid_proposals (
    id           bigserial PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL,
    subject      text NOT NULL,
    description  text NOT NULL,
    ralph_task_id text NULL,
    status       text NOT NULL,                  -- submitted | skipped | failed
    UNIQUE (kind, subject)
);
