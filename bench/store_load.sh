#!/usr/bin/env bash
# Issue 9: invocation throughput and latency with the PostgreSQL store beside SQLite, with one
# and with two membraned instances (one I/O thread each) on the same upstream nginx. PostgreSQL is
# a throwaway cluster (tests/support/pg_cluster.sh) with fsync on, on the same machine; the two
# instances share its database and are loaded at once by two wrk processes (half the
# connections each). Installs wrk and nginx if they are missing.
#   bench/store_load.sh [BINARY] [SECONDS] [CONNECTIONS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="$(realpath "${1:-build/release/server/membraned}")"
seconds="${2:-8}"
connections="${3:-32}"
source "$root/bench/load_lib.sh"
load_begin
stop_cluster() { bash "$root/tests/support/pg_cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; load_cleanup; }
trap stop_cluster EXIT

start_upstream_nginx
PG_FSYNC=on bash "$root/tests/support/pg_cluster.sh" start "$work/pg" >/dev/null
admin_url="$(cat "$work/pg/url")"
psql -X -q "$admin_url" -c "CREATE DATABASE bench" >/dev/null
pg_url="${admin_url%/*}/bench"
export MEMBRANED_MASTER_KEY="$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())')"
keys='{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}'
write_post_lua

start_membraned_in sqlite --threads 1
sqlite_port=$mport; sqlite_cap=$(export_lambda "$keys")
start_membraned_in pg-a --threads 1 --store "$pg_url"
pg_a=$mport; pg_cap=$(export_lambda "$keys")
# The second instance needs no set-up of its own: the capability lives in the shared database.
"$binary" serve --listen 127.0.0.1:0 --data-dir "$work/pg-b" --threads 1 --store "$pg_url" \
  --allow-upstream 127.0.0.0/8 >"$work/pg-b.out" 2>/dev/null </dev/null & pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/pg-b.out" 2>/dev/null && break; sleep 0.1; done
pg_b=$(grep -o '127.0.0.1:[0-9]*' "$work/pg-b.out" | head -1 | cut -d: -f2)
sleep 0.5

echo "wrk: 2 threads, $connections connections, ${seconds}s, POST with a 1 KiB body; each membraned 1 thread"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
run "SQLite, one instance" "http://127.0.0.1:$sqlite_port/" -H "Authorization: Bearer $sqlite_cap"
run "PostgreSQL, one instance" "http://127.0.0.1:$pg_a/" -H "Authorization: Bearer $pg_cap"
# Two instances at once: two wrk, half the connections each; their rows, then the sum.
half=$((connections / 2))
(connections=$half run "PostgreSQL, two instances: A" "http://127.0.0.1:$pg_a/" -H "Authorization: Bearer $pg_cap" >"$work/a.row") &
a=$!
(connections=$half run "PostgreSQL, two instances: B" "http://127.0.0.1:$pg_b/" -H "Authorization: Bearer $pg_cap" >"$work/b.row") &
b=$!
wait $a $b
cat "$work/a.row" "$work/b.row"
awk -F'|' '{gsub(/ /,"",$3); sum += $3} END {printf "| %-44s | %10.2f |\n", "PostgreSQL, two instances: sum", sum}' "$work/a.row" "$work/b.row"
