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
# Compose bind-mounts these files with their owner and mode, so as root (docker, rootful podman) each goes to the
# uid of the one container that reads it. Rootless podman: `podman unshare chown` with the same ids.
if [ "$(id -u)" = 0 ]; then
  chown 999:999 postgres_password
  chown 1000:1000 qdrant_local.yaml
  chown 10001:10001 postgres_dsn qdrant_api_key service_api_key dashboard_session_secret
  chown 65534:65534 metrics_token
fi
echo "secrets written to $(pwd)"
