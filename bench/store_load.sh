#!/usr/bin/env bash
# Invocation throughput and latency with the PostgreSQL store beside SQLite, with one
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

start_upstream_nginx
start_pg_cluster
keys='{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}'
write_post_lua

start_membraned_in sqlite --threads 1
sqlite_port=$mport; sqlite_cap=$(export_lambda "$keys")
start_membraned_in pg-a --threads 1 --store "$pg_url"
pg_a=$mport; pg_cap=$(export_lambda "$keys")
# The second instance needs no set-up of its own: the capability lives in the shared database.
"$binary" serve --init --listen 127.0.0.1:0 --data-dir "$work/pg-b" --threads 1 --store "$pg_url" \
  --allow-upstream 127.0.0.0/8 >"$work/pg-b.out" 2>/dev/null </dev/null & pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/pg-b.out" 2>/dev/null && break; sleep 0.1; done
pg_b=$(grep -o '127.0.0.1:[0-9]*' "$work/pg-b.out" | head -1 | cut -d: -f2)
sleep 0.5

# Where the time goes: CPU seconds (user + system) used during a run by each kind of process,
# from /proc, per request answered.
cpu_ticks() {  # comm name: the summed utime + stime of those processes, in clock ticks
  local total=0 f
  for f in /proc/[0-9]*/stat; do
    read -r line <"$f" 2>/dev/null || continue
    local comm="${line#*(}"; comm="${comm%%)*}"
    [ "$comm" = "$1" ] || continue
    local rest=(${line##*) })
    total=$((total + rest[11] + rest[12]))
  done
  echo "$total"
}
snapshot() { for c in membraned postgres nginx; do echo -n "$(cpu_ticks $c) "; done; }
cpu_row() {  # label before after requests
  local hz; hz=$(getconf CLK_TCK)
  read -r -a b <<<"$2"; read -r -a a <<<"$3"
  printf "| %-44s |" "$1"
  for i in 0 1 2; do
    awk -v d=$(( a[i] - b[i] )) -v hz="$hz" -v n="$4" 'BEGIN {printf " %8.1f |", d / hz * 1e6 / n}'
  done
  echo
}
cpu_rows=()
measured() {  # label url [args]: run, then note the CPU per request of that run
  local before; before=$(snapshot)
  run "$@"
  local after; after=$(snapshot)
  cpu_rows+=("$(cpu_row "$1" "$before" "$after" "$((last_rps * seconds))")")
}

echo "wrk: 2 threads, $connections connections, ${seconds}s, POST with a 1 KiB body; each membraned 1 thread"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
measured "SQLite, one instance" "http://127.0.0.1:$sqlite_port/" -H "Authorization: Bearer $sqlite_cap"
measured "PostgreSQL, one instance" "http://127.0.0.1:$pg_a/" -H "Authorization: Bearer $pg_cap"
# Two instances at once: two wrk, half the connections each; their rows, then the sum.
half=$((connections / 2))
both_before=$(snapshot)
(connections=$half run "PostgreSQL, two instances: A" "http://127.0.0.1:$pg_a/" -H "Authorization: Bearer $pg_cap" >"$work/a.row") &
a=$!
(connections=$half run "PostgreSQL, two instances: B" "http://127.0.0.1:$pg_b/" -H "Authorization: Bearer $pg_cap" >"$work/b.row") &
b=$!
wait $a $b
cat "$work/a.row" "$work/b.row"
both_after=$(snapshot)
awk -F'|' '{gsub(/ /,"",$3); sum += $3} END {printf "| %-44s | %10.2f |\n", "PostgreSQL, two instances: sum", sum}' "$work/a.row" "$work/b.row"
both_rps=$(awk -F'|' '{gsub(/ /,"",$3); sum += $3} END {printf "%d", sum}' "$work/a.row" "$work/b.row")
cpu_rows+=("$(cpu_row "PostgreSQL, two instances" "$both_before" "$both_after" "$((both_rps * seconds))")")

echo
echo "CPU time per request (µs, user + system, from /proc), by process kind"
printf "| %-44s | %9s | %8s | %8s |\n" "run" "membraned" "postgres" "nginx"
for row in "${cpu_rows[@]}"; do echo "$row"; done
