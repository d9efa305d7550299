-- Foundation shared by every server: API keys, live configuration, audit trail.
-- schema_migrations itself is created by the migration runner.

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text,
    key_hash     bytea NOT NULL,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz NULL,
    last_used_at timestamptz NULL
);

CREATE TABLE runtime_config (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text
);

CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text,
    action    text,
    target    text,
    old_value jsonb,
    new_value jsonb
);

-- The dashboard lists the newest entries first.
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
