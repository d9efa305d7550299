#!/bin/sh
# First start: initdb with POSTGRES_USER as the superuser and the password from POSTGRES_PASSWORD_FILE, then
# create POSTGRES_DB. Later starts find PG_VERSION and only run the server. Clients authenticate with
# scram-sha-256 over TCP; nothing trusts the network.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  password_file="${POSTGRES_PASSWORD_FILE:?set POSTGRES_PASSWORD_FILE to a file holding the password}"
  [ -s "$password_file" ] || { echo "POSTGRES_PASSWORD_FILE $password_file is empty or unreadable" >&2; exit 1; }
  initdb --pgdata="$PGDATA" --username="$user" --pwfile="$password_file" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 >/dev/null
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  if [ "$database" != postgres ]; then
    printf 'CREATE DATABASE "%s" OWNER "%s";\n' "$database" "$user" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "initialised $PGDATA (superuser $user, database $database)"
fi
if [ "${1:-}" = postgres ]; then
  shift
  exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
