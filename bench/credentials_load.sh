#!/usr/bin/env bash
# contract §9: what an invocation costs when it signs with cached temporary credentials (the EC2
# instance role, then a role assumed through STS) next to one that signs with the
# export's own static keys. One membraned thread, the same upstream nginx, wrk in turns, three
# rounds. The credentials come from tests/integration/fake_identity.py (IMDSv2 and STS on
# loopback): fetched once, then served from the cache for the whole run.
#   bench/credentials_load.sh [BINARY] [SECONDS] [CONNECTIONS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="$(realpath "${1:-build/release/server/membraned}")"
seconds="${2:-8}"
connections="${3:-32}"
source "$root/bench/load_lib.sh"
load_begin

start_upstream_nginx
(cd "$root/tests/integration" && exec /usr/bin/python3 fake_identity.py >"$work/identity.out") & pids+=($!)
for _ in $(seq 1 100); do grep -q PORT "$work/identity.out" 2>/dev/null && break; sleep 0.1; done
read -r _ sts_port imds_port <"$work/identity.out"
cat >"$work/aws-config" <<'INI'
[profile lambda-invoker]
role_arn = arn:aws:iam::123456789012:role/Lambda-Invoker
credential_source = Ec2InstanceMetadata
membraned_tenants = *
INI
AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$imds_port" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$sts_port" \
  start_membraned_in m --threads 1 --aws-config "$work/aws-config"
static_cap=$(export_lambda '{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}')
role_cap=$(export_lambda '{"credentials":"lambda-invoker","region":"us-east-1","service":"lambda"}')
# The first invocation fetches (IMDSv2, then AssumeRole); every later one uses the cache.
curl -s -o /dev/null -w "first invocation with the role: %{http_code} in %{time_total} s\n" -XPOST \
  "http://127.0.0.1:$mport/" -H "Authorization: Bearer $role_cap" -d '{}'
write_post_lua
sleep 0.5
echo "wrk: 2 threads, $connections connections, ${seconds}s, POST with a 1 KiB body; membraned 1 thread"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
for round in 1 2 3; do
  run "static keys in the export (round $round)" "http://127.0.0.1:$mport/" -H "Authorization: Bearer $static_cap"
  run "assumed role, cached (round $round)" "http://127.0.0.1:$mport/" -H "Authorization: Bearer $role_cap"
done
calls=$(curl -s "http://127.0.0.1:$sts_port/_control/stats" | python3 -c 'import json,sys;d=json.load(sys.stdin);print(len(d["sts_calls"]), d["imds_calls"])')
echo "STS calls during the whole run, IMDS calls: $calls"
