#!/usr/bin/env bash
# Invocation throughput and latency: membraned (lookup + SigV4 + proxy) beside the upstream
# called directly and beside nginx proxying to it with upstream keep-alive. Loopback only,
# bounded in time. Installs wrk and nginx if they are missing.
#   bench/proxy_load.sh [BINARY] [SECONDS] [CONNECTIONS]
set -euo pipefail
binary="$(realpath "${1:-build/release/server/membraned}")"
seconds="${2:-10}"
connections="${3:-32}"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done
export PATH="$PATH:/usr/sbin"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# The upstream: nginx with one worker answering a small JSON body, as a Lambda would.
upstream_port=$(free_port)
mkdir -p "$work/up"
cat >"$work/up/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/up/pid; error_log $work/up/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$upstream_port;
    location / { default_type application/json; return 200 '{"statusCode":200,"body":"ok"}'; } } }
CONF
nginx -c "$work/up/nginx.conf" -p "$work/up" >/dev/null 2>&1 & pids+=($!)

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
  local dir="$work/m$1"
  "$binary" serve --listen 127.0.0.1:0 --data-dir "$dir" --threads "$1" --allow-upstream 127.0.0.0/8 \
    >"$dir.out" 2>/dev/null </dev/null & pids+=($!)
  for _ in $(seq 1 100); do grep -q listening "$dir.out" 2>/dev/null && break; sleep 0.1; done
  local port; port=$(grep -o '127.0.0.1:[0-9]*' "$dir.out" | head -1 | cut -d: -f2)
  local create; create=$(python3 -c "import json;print(json.load(open('$dir/first-tenant.json'))['capabilities']['create'].split('#')[1])")
  local export; export=$(curl -s -XPOST "http://127.0.0.1:$port" -H "Authorization: Bearer $create" -d '{"id":"bench"}' |
    python3 -c "import json,sys;print(json.load(sys.stdin)['capabilities']['export'].split('#')[1])")
  local cap; cap=$(curl -s -XPOST "http://127.0.0.1:$port" -H "Authorization: Bearer $export" -d "{\"uri\":\"http://127.0.0.1:$upstream_port/2015-03-31/functions/f/invocations\",\"method\":\"POST\",\"hmac\":{\"aws4-hmac-sha256\":{\"awsAccessKeyId\":\"AKIDEXAMPLE\",\"secretAccessKey\":\"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\",\"region\":\"us-east-1\",\"service\":\"lambda\"}}}" |
    python3 -c "import json,sys;print(json.load(sys.stdin)['capability'].split('#')[1])")
  mport="$port"
  mcap="$cap"
}

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
LUA

run() {  # label url [header]
  local label="$1" url="$2"; shift 2
  local out; out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/post.lua" "$@" "$url")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  local errors; errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  last_rps="${rps%.*}"
  printf "| %-44s | %10s | %8s | %8s | %s\n" "$label" "$rps" "$p50" "$p99" "${errors:-}"
}

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

# Half load: each connection waits 1 ms between requests (wrk's delay(), which its latency figures
# leave out), with as many connections as make about half of membraned's one-thread rate above.
# The same paced load goes to the upstream directly and to nginx: added latency is the difference.
paced=$(( (full_rps / 2 + 999) / 1000 ))
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
echo
echo "half load: $connections connections, each pausing 1 ms between requests (aim: about $((full_rps / 2)) req/s)"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
run "upstream directly (nginx, 1 worker)" "http://127.0.0.1:$upstream_port/"
run "nginx proxy_pass, keep-alive, 1 worker" "http://127.0.0.1:$proxy_port1/"
run "membraned invoke (SigV4), 1 thread" "http://127.0.0.1:$mport1/" -H "Authorization: Bearer $mcap1"
