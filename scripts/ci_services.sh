#!/usr/bin/env bash
# Install and start what the browser and database tests need: Debian's chromium and PostgreSQL on loopback.
# Prints `export RLUF_TEST_PG_URL=...` when PostgreSQL is up. Best effort: tests that need a missing
# service are skipped with the reason, never silently passed.
set -uo pipefail
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq chromium chromium-driver postgresql >/dev/null 2>&1 || echo "ci_services: apt-get install failed" >&2
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ]; then
  PGDATA=/tmp/rluf-pg
  if ! su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA status" >/dev/null 2>&1; then
    rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres "$PGDATA"
    su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDATA -A trust -U postgres" >/dev/null 2>&1
    su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -o '-c listen_addresses=127.0.0.1 -p 54329 -k /tmp' -l /tmp/rluf-pg.log start -w" >/dev/null 2>&1
  fi
  if su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA status" >/dev/null 2>&1; then
    psql -h 127.0.0.1 -p 54329 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='rluf_test'" | grep -q 1 \
      || psql -h 127.0.0.1 -p 54329 -U postgres -c "CREATE DATABASE rluf_test" >/dev/null
    echo "export RLUF_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:54329/rluf_test"
  fi
fi
