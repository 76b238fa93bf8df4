#!/usr/bin/env bash
# Invocation throughput and latency with the PostgreSQL store beside SQLite, with one, two
# and three membraned instances (one I/O thread each) on the same upstream nginx. PostgreSQL is
# a throwaway cluster (tests/support/pg_cluster.sh) with fsync on, on the same machine; the
# instances share its database and are loaded at once by one wrk process each (the connections
# shared out among them). Also prints the CPU time per request of each kind of process. Installs wrk and nginx if they are missing.
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
# The other instances need no set-up of their own: the capability lives in the shared database.
pg_ports=("$pg_a")
for name in pg-b pg-c; do
  "$binary" serve --init --listen 127.0.0.1:0 --data-dir "$work/$name" --threads 1 --store "$pg_url" \
    --allow-upstream 127.0.0.0/8 >"$work/$name.out" 2>/dev/null </dev/null & pids+=($!)
  for _ in $(seq 1 100); do grep -q listening "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  pg_ports+=("$(grep -o '127.0.0.1:[0-9]*' "$work/$name.out" | head -1 | cut -d: -f2)")
done
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
# N instances at once: N wrk, CONNECTIONS / N connections each; their rows, then the sum.
instances_run() {  # N
  local n=$1 names=(A B C) i rows=()
  local before; before=$(snapshot)
  for ((i = 0; i < n; i++)); do
    (connections=$((connections / n)) run "PostgreSQL, $n instances: ${names[i]}" \
      "http://127.0.0.1:${pg_ports[i]}/" -H "Authorization: Bearer $pg_cap" >"$work/$n-$i.row") &
    rows+=("$work/$n-$i.row")
  done
  wait $(jobs -p | grep -v -x -F "$(printf '%s\n' "${pids[@]}")")
  cat "${rows[@]}"
  local after; after=$(snapshot)
  awk -F'|' -v label="PostgreSQL, $n instances: sum" '{gsub(/ /,"",$3); sum += $3} END {printf "| %-44s | %10.2f |\n", label, sum}' "${rows[@]}"
  local total; total=$(awk -F'|' '{gsub(/ /,"",$3); sum += $3} END {printf "%d", sum}' "${rows[@]}")
  cpu_rows+=("$(cpu_row "PostgreSQL, $n instances" "$before" "$after" "$((total * seconds))")")
}
instances_run 2
instances_run 3
echo
echo "CPU time per request (µs, user + system, from /proc), by process kind"
printf "| %-44s | %9s | %8s | %8s |\n" "run" "membraned" "postgres" "nginx"
for row in "${cpu_rows[@]}"; do echo "$row"; done
