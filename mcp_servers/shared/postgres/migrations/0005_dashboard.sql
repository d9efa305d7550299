-- Dashboard: operator accounts, server-side sessions (logout and expiry really revoke), and service commands the
-- `mcp-stack up` supervisor carries out (restart a child it started).

CREATE TABLE dashboard_users (
    username      text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz NULL
);

-- The cookie carries a signed random id; only its SHA-256 is stored.
CREATE TABLE dashboard_sessions (
    id_hash    bytea PRIMARY KEY,
    username   text NOT NULL REFERENCES dashboard_users (username) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NULL
);

CREATE INDEX dashboard_sessions_expires_idx ON dashboard_sessions (expires_at);

CREATE TABLE service_commands (
    id           bigserial PRIMARY KEY,
    server       text NOT NULL,
    action       text NOT NULL CHECK (action IN ('restart')),
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz NULL,
    result       text NULL
);

-- The supervisor polls for commands not yet carried out.
CREATE INDEX service_commands_pending_idx ON service_commands (id) WHERE done_at IS NULL;
