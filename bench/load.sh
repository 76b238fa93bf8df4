#!/usr/bin/env bash
# Load test of the running service with wrk, on loopback only, bounded in time.
#   bench/load.sh [BINARY] [SECONDS] [CONNECTIONS]
# Starts membraned on a free port with a fresh data directory, creates a membrane, then measures
# two management operations: query (a read: token resolution + a page of membranes) and export
# (a write: resolution inside a transaction, sealing, an fsync'd commit).
set -euo pipefail
binary="${1:-build/release/server/membraned}"
seconds="${2:-10}"
connections="${3:-16}"
command -v wrk >/dev/null || { echo "load.sh needs wrk (apt-get install wrk)"; exit 1; }
work="$(mktemp -d)"
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$binary" serve --init --listen 127.0.0.1:0 --data-dir "$work/var" >"$work/out" 2>"$work/requests.log" &
pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
port="$(grep -o '127.0.0.1:[0-9]*' "$work/out" | head -1 | cut -d: -f2)"
token() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['capabilities'][sys.argv[2]].split('#')[1])" "$@"; }
create="$(token "$work/var/first-tenant.json" create)"
query="$(token "$work/var/first-tenant.json" query)"
curl -s -XPOST "http://127.0.0.1:$port" -H "Authorization: Bearer $create" -d '{"id":"load"}' >"$work/membrane.json"
export_token="$(token "$work/membrane.json" export)"
echo "== query: GET / (limit 1), $connections connections, ${seconds}s"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -H "Authorization: Bearer $query" "http://127.0.0.1:$port/"
cat >"$work/export.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"uri":"https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f/invocations","hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}}}'
wrk.headers["Authorization"] = "Bearer $export_token"
LUA
echo "== export: POST / (uri capability with aws4 keys), $connections connections, ${seconds}s"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/export.lua" "http://127.0.0.1:$port/"
echo "== resident memory after the run: $(ps -o rss= -p "$pid") KiB"
