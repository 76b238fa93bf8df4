# Shared by the wrk load scripts (sourced): tools, a work directory cleaned up with every
# process started, ports, the upstream nginx, membraned set-up and one wrk run printed as a
# table row. The caller sets `binary`, `connections` and `seconds`, then calls load_begin.

load_begin() {  # wrk and nginx (installed when missing), $work, and the cleanup of $pids
  for tool in wrk nginx; do
    command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null || {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
  done
  export PATH="$PATH:/usr/sbin"
  work="$(mktemp -d)"
  pids=()
  trap load_cleanup EXIT
}

load_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# A throwaway PostgreSQL cluster with fsync on (tests/support/pg_cluster.sh) in $work/pg, stopped
# at exit, with a database `bench`: sets pg_url. Exports a master key, so that instances sharing
# the database open the same secrets.
start_pg_cluster() {
  local root; root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  pg_script="$root/tests/support/pg_cluster.sh"
  stop_cluster() { bash "$pg_script" stop "$work/pg" >/dev/null 2>&1 || true; load_cleanup; }
  trap stop_cluster EXIT
  PG_FSYNC=on bash "$pg_script" start "$work/pg" >/dev/null
  local admin_url; admin_url="$(cat "$work/pg/url")"
  psql -X -q "$admin_url" -c "CREATE DATABASE bench" >/dev/null
  pg_url="${admin_url%/*}/bench"
  MEMBRANED_MASTER_KEY="$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())')"
  export MEMBRANED_MASTER_KEY
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# The upstream: nginx with one worker answering a small JSON body, as a Lambda would. Sets
# upstream_port (no command substitution: pids must stay ours).
start_upstream_nginx() {
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
}

# membraned on a free port with `$@` as extra flags, in $work/$name; sets mport and mexport
# (the export capability of a fresh membrane, whose creation answer is kept in $work/$name.membrane).
start_membraned_in() {  # name [flags...]
  local dir="$work/$1"; shift
  "$binary" serve --init --listen 127.0.0.1:0 --data-dir "$dir" --allow-upstream 127.0.0.0/8 "$@" \
    >"$dir.out" 2>/dev/null </dev/null & pids+=($!)
  for _ in $(seq 1 100); do grep -q listening "$dir.out" 2>/dev/null && break; sleep 0.1; done
  mport=$(grep -o '127.0.0.1:[0-9]*' "$dir.out" | head -1 | cut -d: -f2)
  local create; create=$(token_of "$dir/first-tenant.json" create)
  curl -s -XPOST "http://127.0.0.1:$mport" -H "Authorization: Bearer $create" -d '{"id":"bench"}' >"$dir.membrane"
  mexport=$(token_of "$dir.membrane" export)
}

token_of() {  # file name: the token of capability NAME in a tenant's or membrane's JSON FILE
  python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['capabilities'][sys.argv[2]].split('#')[1])" "$1" "$2"
}

# Exports a Lambda-shaped uri capability on the upstream nginx; `$1` is the aws4-hmac-sha256
# object's JSON, `$2` (optional) more fields of the export body, e.g. '"maxUses":1000'. Prints
# the token.
export_lambda() {
  curl -s -XPOST "http://127.0.0.1:$mport" -H "Authorization: Bearer $mexport" \
    -d "{\"uri\":\"http://127.0.0.1:$upstream_port/2015-03-31/functions/f/invocations\",\"method\":\"POST\",\"hmac\":{\"aws4-hmac-sha256\":$1}${2:+,$2}}" |
    python3 -c "import json,sys;print(json.load(sys.stdin)['capability'].split('#')[1])"
}

write_post_lua() {  # POST with a 1 KiB body
  cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
LUA
}

run() {  # label url [wrk args]: one table row; sets last_rps. The request: $lua, else post.lua
  local label="$1" url="$2"; shift 2
  local out; out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "${lua:-$work/post.lua}" "$@" "$url")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  local errors; errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  last_rps="${rps%.*}"
  printf "| %-44s | %10s | %8s | %8s | %s\n" "$label" "$rps" "$p50" "$p99" "${errors:-}"
}
