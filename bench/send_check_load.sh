#!/usr/bin/env bash
# The cost of the send-time revocation check on the hot path: two membraned builds side by side
# (BEFORE without the check, AFTER with it), one I/O thread each, SQLite, the same SigV4 export
# and the same wrk load, in alternating rounds so that a drift of the machine's speed hits both.
#   bench/send_check_load.sh BEFORE_BINARY AFTER_BINARY [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
before="$(realpath "$1")"
after="$(realpath "$2")"
rounds="${3:-5}"
seconds="${4:-10}"
connections="${5:-32}"
source "$(dirname "${BASH_SOURCE[0]}")/load_lib.sh"
load_begin
start_upstream_nginx
write_post_lua
keys='{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}'
binary="$before"; start_membraned_in before --threads 1; before_port="$mport"; before_cap=$(export_lambda "$keys")
binary="$after"; start_membraned_in after --threads 1; after_port="$mport"; after_cap=$(export_lambda "$keys")
sleep 0.5
echo "wrk: 2 threads, $connections connections, ${seconds}s per run, POST with a 1 KiB body; $rounds rounds"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
for round in $(seq 1 "$rounds"); do
  run "round $round: before (no send-time check)" "http://127.0.0.1:$before_port/" -H "Authorization: Bearer $before_cap"
  run "round $round: after (send-time check)" "http://127.0.0.1:$after_port/" -H "Authorization: Bearer $after_cap"
done
