#!/usr/bin/env bash
# Durable writes: exports per second with CONNECTIONS concurrent clients, each export committed
# to stable storage before its 201, on SQLite with one commit per export (--write-threads 0: on
# the I/O threads, as before group commit) and with group commit (the default), and on
# PostgreSQL (a throwaway cluster with fsync on, tests/support/pg_cluster.sh). Then the time of a
# membrane revoke with 1 grant below it and with every grant the export run made below it (the
# revoke is one row and the epoch, whatever is below), without and with the audit log (which
# counts the grants a revoke cut, after its 202). membraned has its default threads (one per core) and shares
# the machine's cores with wrk and PostgreSQL. Installs wrk and nginx if they are missing.
#   bench/write_load.sh [BINARY] [SECONDS] [CONNECTIONS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="$(realpath "${1:-build/release/server/membraned}")"
seconds="${2:-8}"
connections="${3:-32}"
source "$root/bench/load_lib.sh"
load_begin
start_pg_cluster

# The export body: a Lambda-shaped SigV4 capability on a literal loopback address (a name would
# add the export-time DNS check, which is not what is measured here; the upstream is never called).
export_lua() {  # file export-token
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '{"uri":"http://127.0.0.1:9/2015-03-31/functions/f/invocations","method":"POST","hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}}}'
wrk.headers["Authorization"] = "Bearer $2"
LUA
}

exports_run() {  # label: wrk against the membraned started last; one table row
  export_lua "$work/export-$mport.lua" "$mexport"
  lua="$work/export-$mport.lua" run "$1" "http://127.0.0.1:$mport/"
}

revoke_time() {  # membrane-file: the revoke's 202, in ms (the settle wait included)
  local t; t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$mport/" \
    -H "Authorization: Bearer $(token_of "$1" revoke)")
  [ "${t%% *}" = 202 ] || { echo "revoke answered ${t%% *}" >&2; exit 1; }
  awk -v s="${t#* }" 'BEGIN {printf "%.1f", s * 1000}'
}

grants_below() {  # data-dir: grants in the SQLite store
  python3 -c "import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute('select count(*) from grants').fetchone()[0])" "$1/membraned.db"
}

# A second membrane with a single grant, on the membraned started last.
one_grant_membrane() {  # name: writes $work/NAME.one
  local create; create=$(token_of "$work/$1/first-tenant.json" create)
  curl -s -XPOST "http://127.0.0.1:$mport" -H "Authorization: Bearer $create" -d '{"id":"one"}' >"$work/$1.one"
  local export; export=$(token_of "$work/$1.one" export)
  curl -s -o /dev/null -XPOST "http://127.0.0.1:$mport" -H "Authorization: Bearer $export" \
    -d '{"uri":"http://127.0.0.1:9/f","hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}}}'
}

echo "wrk: 2 threads, $connections connections, ${seconds}s, POST / exporting a SigV4 Lambda capability"
printf "| %-44s | %10s | %8s | %8s |\n" "store" "exports/s" "p50" "p99"
start_membraned_in one-by-one --write-threads 0
exports_run "SQLite, one commit per export (--write-threads 0)"
start_membraned_in grouped
exports_run "SQLite, group commit (--write-threads 32, default)"
start_membraned_in audited --audit-log "$work/audit.jsonl"
exports_run "SQLite, group commit, audit log on"
start_membraned_in pg --store "$pg_url" --db-connections "$connections"
exports_run "PostgreSQL (fsync on), --db-connections $connections"

echo
echo "Revoking a membrane (time to the 202, which includes the settle wait):"
printf "| %-44s | %14s | %10s |\n" "store" "grants below" "202 after"
for name in grouped audited; do
  label="SQLite"; [ "$name" = audited ] && label="SQLite, audit log on (counts the grants cut)"
  mport=$(grep -o '127.0.0.1:[0-9]*' "$work/$name.out" | head -1 | cut -d: -f2)
  one_grant_membrane "$name"
  printf "| %-44s | %14s | %7s ms |\n" "$label" 1 "$(revoke_time "$work/$name.one")"
  n=$(( $(grants_below "$work/$name") - 1 ))
  printf "| %-44s | %14s | %7s ms |\n" "$label" "$n" "$(revoke_time "$work/$name.membrane")"
done
