#!/usr/bin/env bash
# Many holders: a store with N grants, and wrk sending each request with a token picked at random
# among them, beside the same membraned sent one token all along (the one-hot rate), in one run.
# Prints, for each N: the rates, p50/p99, membraned's resident memory after the random runs and
# the resolution cache's hit ratio and size from /metrics. One I/O thread, SQLite, loopback; the
# upstream is nginx answering a Lambda-shaped JSON body. Installs wrk and nginx if missing.
#   bench/many_holders.sh [BUILD_DIR] [SECONDS] [CONNECTIONS] [N...]
# BUILD_DIR is a build of the bench preset (membraned and bench/seed_grants); defaults:
# build/bench, 10 s, 32 connections, N = 100000 1000000. Extra membraned flags (for example
# --resolution-cache-mb 512) go in MEMBRANED_FLAGS.
set -euo pipefail
build="$(realpath "${1:-build/bench}")"
seconds="${2:-10}"
connections="${3:-32}"
shift $(( $# < 3 ? $# : 3 ))
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(100000 1000000)
binary="$build/server/membraned"
seeder="$build/bench/seed_grants"
source "$(dirname "${BASH_SOURCE[0]}")/load_lib.sh"
load_begin
start_upstream_nginx

# The same request either way, built in Lua per request so that wrk's own cost is alike: ONE
# sends the first token every time, RANDOM a token drawn at random (its own sequence per thread).
cat >"$work/holders.lua" <<'LUA'
local tokens, mode, body = {}, "random", string.rep("x", 1024)
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  mode = args[2] or mode
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = "Bearer " .. line
    if mode == "one" then break end
  end
  math.randomseed(os.time() * 1000 + (seed or 0))
end
function request()
  local auth = tokens[1]
  if mode == "random" then auth = tokens[math.random(#tokens)] end
  return wrk.format("POST", "/", {["Authorization"] = auth}, body)
end
LUA

metric() {  # name [labels]: the sample's value from membraned's /metrics
  local want="$1"
  [ -n "${2:-}" ] && want="$1{$2}"
  curl -s "http://127.0.0.1:$mport/metrics" | awk -v want="$want" '$1 == want {print $2}'
}

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

holders_run() {  # label mode: one table row; sets last_rps
  local label="$1" mode="$2"
  local out; out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/holders.lua" \
    "http://127.0.0.1:$mport/" -- "$work/tokens" "$mode")
  local rps p50 p99 errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  last_rps="${rps%.*}"
  printf "| %-38s | %10s | %8s | %8s | %s\n" "$label" "$rps" "$p50" "$p99" "${errors:-}"
}

for n in "${sizes[@]}"; do
  dir="$work/holders-$n"
  started=$(date +%s)
  key=$("$seeder" "$dir" "$n" "http://127.0.0.1:$upstream_port/2015-03-31/functions/f/invocations" "$work/tokens" 2>/dev/null)
  echo
  echo "N = $n grants (seeded in $(( $(date +%s) - started )) s, $(du -m "$dir/membraned.db" | cut -f1) MB database)," \
       "wrk: 2 threads, $connections connections, ${seconds}s per run, POST with a 1 KiB body"
  # shellcheck disable=SC2086
  MEMBRANED_MASTER_KEY="$key" "$binary" serve --listen 127.0.0.1:0 --data-dir "$dir" --allow-upstream 127.0.0.0/8 \
    --threads 1 --metrics ${MEMBRANED_FLAGS:-} >"$dir.out" 2>/dev/null </dev/null & pids+=($!)
  mpid=$!
  for _ in $(seq 1 100); do grep -q listening "$dir.out" 2>/dev/null && break; sleep 0.1; done
  mport=$(grep -o '127.0.0.1:[0-9]*' "$dir.out" | head -1 | cut -d: -f2)
  printf "| %-38s | %10s | %8s | %8s |\n" "run" "req/s" "p50" "p99"
  holders_run "one token (one-hot)" one; one_rps="$last_rps"
  holders_run "random token, first ${seconds} s" random
  hits0=$(metric membraned_resolution_cache_lookups_total 'result="hit"')
  misses0=$(metric membraned_resolution_cache_lookups_total 'result="miss"')
  holders_run "random token, next ${seconds} s" random; random_rps="$last_rps"
  hits=$(metric membraned_resolution_cache_lookups_total 'result="hit"')
  misses=$(metric membraned_resolution_cache_lookups_total 'result="miss"')
  python3 - "$one_rps" "$random_rps" "$hits0" "$misses0" "$hits" "$misses" "$(rss_mb "$mpid")" \
    "$(metric membraned_resolution_cache_entries)" "$(metric membraned_resolution_cache_bytes)" <<'PY'
import sys
one, rnd, h0, m0, h, m, rss, entries, size = (float(x) for x in sys.argv[1:])
print(f"random / one-hot: {rnd / one:.2f}; cache hit ratio in the second random run: "
      f"{(h - h0) / max(1, (h - h0) + (m - m0)):.1%}; {entries:.0f} resolutions cached "
      f"({size / 2**20:.0f} MiB, {size / max(1, entries):.0f} bytes each); membraned RSS {rss:.0f} MB")
PY
  kill -TERM "$mpid"; wait "$mpid" 2>/dev/null || true
  rm -rf "$dir"
done
