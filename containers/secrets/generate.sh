#!/usr/bin/env sh
# Create the secret files compose.yaml mounts (once; existing files are kept). Mode 0600, never committed.
# service_api_key and metrics_token are API keys of the stack itself: create them with `mcp-stack keys create`
# once PostgreSQL and AIDB run (docs/operations.md, "Bootstrap"); placeholders are written until then.
set -eu
cd "$(dirname "$0")"
umask 077
random() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
[ -s postgres_password ] || random > postgres_password
[ -s postgres_dsn ] || printf 'postgresql://mcpstack:%s@postgres:5432/mcpstack\n' "$(cat postgres_password)" > postgres_dsn
[ -s qdrant_api_key ] || random > qdrant_api_key
[ -s qdrant_local.yaml ] || printf 'service:\n  api_key: "%s"\n' "$(cat qdrant_api_key)" > qdrant_local.yaml
[ -s dashboard_session_secret ] || random > dashboard_session_secret
[ -e service_api_key ] || printf 'replace-with-mcp-stack-keys-create-output\n' > service_api_key
[ -e metrics_token ] || printf 'replace-with-mcp-stack-keys-create-output\n' > metrics_token
echo "secrets written to $(pwd)"
