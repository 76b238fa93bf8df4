#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl, as an unprivileged user, on a
# free port of 127.0.0.1 only, trust authentication (loopback, test data only).
#
#   pg_cluster.sh start DIR    make and start a cluster; writes DIR/url (postgresql://...), DIR/port,
#                              DIR/data (the data directory's path) and DIR/postgres.log
#   pg_cluster.sh stop DIR     stop it and remove its data (nothing to do when it is not there)
#   pg_cluster.sh halt DIR     stop the server, keep the data (an outage)
#   pg_cluster.sh resume DIR   start a halted server again, on the same port
#
# The data directory lives in a fresh folder under /tmp whatever DIR is, so the cluster's user
# can reach it even when DIR sits under a folder only root may enter. PG_BIN overrides where
# initdb and pg_ctl are found (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail

command="${1:-}"
dir="${2:-}"
if [ -z "$command" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop|halt|resume DIR" >&2
  exit 2
fi

pg_bin="${PG_BIN:-}"
if [ -z "$pg_bin" ]; then
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
fi
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/pg_ctl" ]; then
  echo "pg_cluster: no PostgreSQL server found (install Debian's postgresql: scripts/setup.sh)" >&2
  exit 1
fi

# PostgreSQL refuses to run as root: as root, run it as its own system user (made by Debian's
# postgresql package), else as nobody.
cluster_user=""
if [ "$(id -u)" -eq 0 ]; then
  if id -u postgres >/dev/null 2>&1; then cluster_user=postgres; else cluster_user=nobody; fi
fi
as_cluster_user() {
  if [ -n "$cluster_user" ]; then runuser -u "$cluster_user" -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

server_start() {
  local data="$1" port="$2"
  # fsync off: a test cluster outlives no power loss; it makes every CREATE DATABASE cheap.
  # PG_FSYNC=on gives durable commits (benchmarks).
  as_cluster_user "$pg_bin/pg_ctl" start -w -t 60 -D "$data" -l "$data/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$data' -c fsync=${PG_FSYNC:-off} -c max_connections=200" \
    >/dev/null
}

server_stop() {
  local data="$1"
  if [ -f "$data/postmaster.pid" ]; then
    as_cluster_user "$pg_bin/pg_ctl" stop -w -t 60 -m fast -D "$data" >/dev/null || true
  fi
}

case "$command" in
  start)
    mkdir -p "$dir"
    if [ -f "$dir/data" ]; then "$0" stop "$dir"; fi  # a cluster left by an interrupted run
    data_parent="$(mktemp -d /tmp/membraned-pg-XXXXXX)"
    data="$data_parent/data"
    if [ -n "$cluster_user" ]; then chown "$cluster_user" "$data_parent"; fi
    echo "$data" > "$dir/data"
    as_cluster_user "$pg_bin/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    # A free port can be taken between the check and the start: try a few.
    for attempt in 1 2 3 4 5; do
      port="$(free_port)"
      if server_start "$data" "$port"; then
        echo "$port" > "$dir/port"
        echo "postgresql://postgres@127.0.0.1:$port/postgres" > "$dir/url"
        ln -sf "$data/postgres.log" "$dir/postgres.log"
        echo "pg_cluster: PostgreSQL on 127.0.0.1:$port (data in $data)"
        exit 0
      fi
      echo "pg_cluster: start on port $port failed (attempt $attempt)" >&2
    done
    tail -n 20 "$data/postgres.log" >&2 || true
    exit 1
    ;;
  stop)
    if [ ! -f "$dir/data" ]; then exit 0; fi
    data="$(cat "$dir/data")"
    server_stop "$data"
    case "$data" in
      /tmp/membraned-pg-*/data) rm -rf "$(dirname "$data")" ;;
    esac
    rm -f "$dir/data" "$dir/url" "$dir/port" "$dir/postgres.log"
    echo "pg_cluster: stopped"
    ;;
  halt)
    server_stop "$(cat "$dir/data")"
    ;;
  resume)
    server_start "$(cat "$dir/data")" "$(cat "$dir/port")"
    ;;
  *)
    echo "usage: $0 start|stop|halt|resume DIR" >&2
    exit 2
    ;;
esac
