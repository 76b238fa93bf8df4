#!/usr/bin/env bash
# Invocation throughput and latency: membraned (lookup + SigV4 + proxy) beside the upstream
# called directly, beside nginx proxying to it with upstream keep-alive, and beside a Node signing
# proxy (bench/aws4-proxy: the aws4 package signs, one process). Loopback only, bounded in time.
# Installs wrk and nginx if they are missing; the Node row needs node and npm (its package comes
# from the npm registry, pinned in package-lock.json) and is left out, saying so, without them.
#   bench/proxy_load.sh [BINARY] [SECONDS] [CONNECTIONS]
set -euo pipefail
binary="$(realpath "${1:-build/release/server/membraned}")"
seconds="${2:-10}"
connections="${3:-32}"
source "$(dirname "${BASH_SOURCE[0]}")/load_lib.sh"
load_begin

start_upstream_nginx

start_proxy_nginx() {  # $1 workers; sets proxy_port (no command substitution: pids must stay ours)
  local port; port=$(free_port); mkdir -p "$work/px$1"
  cat >"$work/px$1/nginx.conf" <<CONF
worker_processes $1; daemon off; pid $work/px$1/pid; error_log $work/px$1/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream lambda { server 127.0.0.1:$upstream_port; keepalive 64; }
  server { listen 127.0.0.1:$port;
    location / { proxy_pass http://lambda/2015-03-31/functions/f/invocations; proxy_http_version 1.1;
                 proxy_set_header Connection ""; } } }
CONF
  nginx -c "$work/px$1/nginx.conf" -p "$work/px$1" >/dev/null 2>&1 & pids+=($!)
  proxy_port="$port"
}

start_membraned() {  # $1 threads; sets mport and mcap
  start_membraned_in "m$1" --threads "$1"
  mcap=$(export_lambda '{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}')
}

# Sets aws4_port, or leaves it empty (no node or npm here).
start_aws4_proxy() {
  aws4_port=""
  local dir; dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/aws4-proxy"
  command -v node >/dev/null && command -v npm >/dev/null || return 0
  if [[ ! -d "$dir/node_modules" || "$dir/node_modules" -ot "$dir/package-lock.json" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund >/dev/null 2>&1) || return 0
  fi
  local port; port=$(free_port)
  node "$dir/proxy.js" "$port" "$upstream_port" & pids+=($!)
  aws4_port="$port"
}

write_post_lua
start_aws4_proxy

sleep 0.5
echo "wrk: 2 threads, $connections connections, ${seconds}s, POST with a 1 KiB body"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
run "upstream directly (nginx, 1 worker)" "http://127.0.0.1:$upstream_port/"
for n in 1 2; do
  start_proxy_nginx "$n"
  start_membraned "$n"
  sleep 0.5
  run "nginx proxy_pass, keep-alive, $n worker(s)" "http://127.0.0.1:$proxy_port/"
  run "membraned invoke (SigV4), $n thread(s)" "http://127.0.0.1:$mport/" -H "Authorization: Bearer $mcap"
  if [ "$n" = 1 ]; then full_rps="$last_rps"; mport1="$mport"; mcap1="$mcap"; proxy_port1="$proxy_port"; fi
done
if [ -n "$aws4_port" ]; then
  run "Node aws4 signing proxy, 1 process" "http://127.0.0.1:$aws4_port/"
else
  echo "(the Node aws4 signing proxy is left out: no node and npm here)"
fi

# Half load: each connection waits 1 ms between requests (wrk's delay(), which its latency figures
# leave out), with as many connections as make about half of membraned's one-thread rate above.
# The same paced load goes to the upstream directly and to nginx: added latency is the difference.
paced=$(( (full_rps / 2 + 999) / 1000 ))
(( paced >= 2 )) || paced=2  # wrk needs a connection per thread (a slow build, e.g. a sanitizer's)
cat >"$work/paced.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
function delay() return 1 end
LUA
connections="$paced"
cp "$work/paced.lua" "$work/post.lua"
# A first paced run on membraned calibrates the number of connections (the pause plus the
# answer's time sets each connection's rate).
run "calibration" "http://127.0.0.1:$mport1/" -H "Authorization: Bearer $mcap1" >/dev/null
connections=$(( (paced * full_rps / 2 + last_rps - 1) / last_rps ))
(( connections >= 2 )) || connections=2
echo
echo "half load: $connections connections, each pausing 1 ms between requests (aim: about $((full_rps / 2)) req/s)"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
run "upstream directly (nginx, 1 worker)" "http://127.0.0.1:$upstream_port/"
run "nginx proxy_pass, keep-alive, 1 worker" "http://127.0.0.1:$proxy_port1/"
run "membraned invoke (SigV4), 1 thread" "http://127.0.0.1:$mport1/" -H "Authorization: Bearer $mcap1"
