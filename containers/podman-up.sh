#!/usr/bin/env bash
# Start compose services one at a time, each only once the healthchecks of those before it pass: what
# `depends_on: {condition: service_healthy}` asks for, done here because podman-compose ignores that condition on
# podman < 4.6 and podman 4.3 runs no healthcheck timer without systemd (this script runs the checks itself).
# Docker Compose gates by itself: `docker compose up -d` needs none of this.
#
#   containers/podman-up.sh [-f FILE]... [-p PROJECT] SERVICE...     e.g. postgres qdrant aidb hybrid ralph dashboard
#
# Environment: PODMAN_COMPOSE (default podman-compose), HEALTH_TIMEOUT seconds per service (default 180).
set -euo pipefail

compose=("${PODMAN_COMPOSE:-podman-compose}")
files=()
project=""
while (($#)); do
  case "$1" in
    -f) files+=("$2"); compose+=(-f "$2"); shift 2 ;;
    -p) project="$2"; compose+=(-p "$2"); shift 2 ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
(($#)) || { echo "usage: $0 [-f FILE]... [-p PROJECT] SERVICE..." >&2; exit 2; }
if [[ -z "$project" ]]; then
  project="$(sed -n 's/^name: *//p' "${files[0]:-compose.yaml}" | head -n1)"
fi
[[ -n "$project" ]] || { echo "no project name: pass -p or set name: in the compose file" >&2; exit 2; }

for service in "$@"; do
  "${compose[@]}" up -d --no-deps "$service" >/dev/null
  container="$(podman ps -a -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$service" | head -n1)"
  [[ -n "$container" ]] || { echo "$service: no container was created" >&2; exit 1; }
  if [[ "$(podman inspect -f '{{.Config.Healthcheck}}' "$container")" == "<nil>" ]]; then
    echo "$service: started (no healthcheck)"
    continue
  fi
  start=$SECONDS
  until podman healthcheck run "$container" >/dev/null 2>&1; do
    if [[ "$(podman inspect -f '{{.State.Running}}' "$container")" != true ]]; then
      echo "$service: exited before it was healthy; last log lines:" >&2
      podman logs --tail 20 "$container" >&2 || true
      exit 1
    fi
    if ((SECONDS - start > ${HEALTH_TIMEOUT:-180})); then
      echo "$service: not healthy within ${HEALTH_TIMEOUT:-180} s" >&2
      exit 1
    fi
    sleep 1
  done
  echo "$service: healthy after $((SECONDS - start)) s"
done
