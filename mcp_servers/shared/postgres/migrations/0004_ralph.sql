-- Ralph: durable agent-loop tasks and their iterations.
-- Workers claim tasks with FOR UPDATE SKIP LOCKED and hold a lease they renew; an iteration number is claimed
-- in the same transaction that inserts its row, so (task_id, number) is executed at most once.

CREATE TABLE ralph_tasks (
    id                   uuid PRIMARY KEY,
    prompt               text NOT NULL,
    backend              text NOT NULL,
    completion_promise   text NULL,
    verify_command       text NULL,
    max_iterations       integer NOT NULL CHECK (max_iterations >= 1),
    max_seconds          double precision NULL CHECK (max_seconds IS NULL OR max_seconds > 0),
    max_cost_usd         numeric(14, 6) NULL CHECK (max_cost_usd IS NULL OR max_cost_usd >= 0),
    workspace            text NULL,
    git_checkpoint       boolean NOT NULL DEFAULT false,
    hooks                jsonb NOT NULL DEFAULT '[]'::jsonb,
    origin               text NOT NULL DEFAULT 'user',
    submitted_by         text NULL,
    -- queued | awaiting_approval | running | completed | limit_reached | stuck | failed | stopped | rejected
    status               text NOT NULL,
    completion_reason    text NULL,
    detail               text NULL,
    stop_requested       boolean NOT NULL DEFAULT false,
    lease_owner          text NULL,
    lease_expires_at     timestamptz NULL,
    next_iteration       integer NOT NULL DEFAULT 1,
    not_before           timestamptz NOT NULL DEFAULT now(),
    -- Loop state that must survive a worker crash: stuck detection and backoff resume from it.
    consecutive_failures integer NOT NULL DEFAULT 0,
    repeat_count         integer NOT NULL DEFAULT 0,
    last_output_sha256   text NULL,
    cost_usd             numeric(14, 6) NOT NULL DEFAULT 0,
    cost_known           boolean NOT NULL DEFAULT true,
    require_approval     boolean NOT NULL DEFAULT false,
    approved             boolean NULL,
    approval_note        text NULL,
    approved_by          text NULL,
    approved_at          timestamptz NULL,
    created_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at           timestamptz NULL,
    finished_at          timestamptz NULL,
    updated_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (status IN ('queued', 'awaiting_approval', 'running', 'completed', 'limit_reached', 'stuck', 'failed',
                      'stopped', 'rejected'))
);

-- The claim query scans only live tasks, oldest first.
CREATE INDEX ralph_tasks_claimable_idx ON ralph_tasks (created_at, id) WHERE status IN ('queued', 'running');
-- list_tasks pages newest first, optionally by status.
CREATE INDEX ralph_tasks_list_idx ON ralph_tasks (created_at DESC, id DESC);
CREATE INDEX ralph_tasks_status_list_idx ON ralph_tasks (status, created_at DESC, id DESC);
-- Lease renewal and stop polling look tasks up by their owner.
CREATE INDEX ralph_tasks_lease_owner_idx ON ralph_tasks (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE ralph_iterations (
    task_id            uuid NOT NULL REFERENCES ralph_tasks (id) ON DELETE CASCADE,
    number             integer NOT NULL CHECK (number >= 1),
    -- running | ok | failed | timeout | interrupted | stopped
    status             text NOT NULL,
    input_summary      text NOT NULL DEFAULT '',
    output             text NULL,
    output_sha256      text NULL,
    exit_status        integer NULL,
    error              text NULL,
    duration_seconds   double precision NULL,
    cost_usd           numeric(14, 6) NULL,
    tokens             integer NULL,
    completed_task     boolean NOT NULL DEFAULT false,
    checkpoint_commit  text NULL,
    hook_results       jsonb NOT NULL DEFAULT '[]'::jsonb,
    worker_id          text NOT NULL,
    worker_host        text NOT NULL,
    process_group      integer NULL,
    started_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at        timestamptz NULL,
    PRIMARY KEY (task_id, number),
    CHECK (status IN ('running', 'ok', 'failed', 'timeout', 'interrupted', 'stopped'))
);
