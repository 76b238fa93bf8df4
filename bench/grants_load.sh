#!/usr/bin/env bash
# What grants cost on the hot path (contract §11): the same SigV4 Lambda-shaped export, invoked
# with wrk, as a plain capability of a build without grants (BEFORE) and, on a build with them
# (AFTER), as an unlimited grant, one that expires tomorrow, one with maxUses 10^9 and one with a
# rate limit far above the load. One I/O thread each, SQLite, alternating rounds so that a drift
# of the machine's speed hits every target alike.
#   bench/grants_load.sh BEFORE_BINARY AFTER_BINARY [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
before="$(realpath "$1")"
after="$(realpath "$2")"
rounds="${3:-3}"
seconds="${4:-10}"
connections="${5:-32}"
source "$(dirname "${BASH_SOURCE[0]}")/load_lib.sh"
load_begin
start_upstream_nginx
write_post_lua
keys='{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}'
tomorrow=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
binary="$before"; start_membraned_in before --threads 1; before_port="$mport"; plain=$(export_lambda "$keys")
binary="$after"; start_membraned_in after --threads 1; after_port="$mport"
unlimited=$(export_lambda "$keys")
expiring=$(export_lambda "$keys" "\"expiresAt\":\"$tomorrow\"")
counted=$(export_lambda "$keys" '"maxUses":1000000000')
rated=$(export_lambda "$keys" '"rateLimit":{"requests":1000000,"perSeconds":1}')
sleep 0.5
echo "wrk: 2 threads, $connections connections, ${seconds}s per run, POST with a 1 KiB body; $rounds rounds"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
for round in $(seq 1 "$rounds"); do
  run "round $round: before, plain capability" "http://127.0.0.1:$before_port/" -H "Authorization: Bearer $plain"
  run "round $round: unlimited grant" "http://127.0.0.1:$after_port/" -H "Authorization: Bearer $unlimited"
  run "round $round: expiring grant" "http://127.0.0.1:$after_port/" -H "Authorization: Bearer $expiring"
  run "round $round: maxUses 10^9" "http://127.0.0.1:$after_port/" -H "Authorization: Bearer $counted"
  run "round $round: rateLimit 10^6/s" "http://127.0.0.1:$after_port/" -H "Authorization: Bearer $rated"
done
