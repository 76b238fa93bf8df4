#!/usr/bin/env bash
# What the audit log (contract §12) costs an invocation: one membraned binary, three instances
# side by side (no audit log; --audit-log to a file; --audit-log - with standard output
# redirected to a file), one I/O thread each, SQLite, the same SigV4 export and the same wrk
# load, in alternating rounds so that a drift of the machine's speed hits all three alike. Then,
# for each audited instance, the records written and dropped (membraned_audit_records_total)
# beside the lines its output holds and the invocations it answered: a writer that kept up has
# dropped none.
#   bench/audit_load.sh BINARY [ROUNDS] [SECONDS] [CONNECTIONS]
# The logs go to a temporary directory under TMPDIR (some 300 bytes a request: a few hundred MB
# per run): point TMPDIR at the disk to measure, not at a tmpfs.
set -euo pipefail
binary="$(realpath "$1")"
rounds="${2:-5}"
seconds="${3:-10}"
connections="${4:-32}"
source "$(dirname "${BASH_SOURCE[0]}")/load_lib.sh"
load_begin
start_upstream_nginx
write_post_lua
keys='{"awsAccessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY","region":"us-east-1","service":"lambda"}'
start_membraned_in off --threads 1 --metrics; off_port="$mport"; off_cap=$(export_lambda "$keys")
start_membraned_in file --threads 1 --metrics --audit-log "$work/audit.log"
file_port="$mport"; file_cap=$(export_lambda "$keys")
# start_membraned_in sends standard output to $work/stdout.out: the records land there.
start_membraned_in stdout --threads 1 --metrics --audit-log -
stdout_port="$mport"; stdout_cap=$(export_lambda "$keys")
sleep 0.5

declare -A port=([off]=$off_port [file]=$file_port [stdout]=$stdout_port)
declare -A cap=([off]=$off_cap [file]=$file_cap [stdout]=$stdout_cap)
declare -A label=([off]="no audit log" [file]="audit log to a file" [stdout]="audit log to stdout (a file)")
declare -A total=([off]=0 [file]=0 [stdout]=0)
order=(off file stdout)
echo "wrk: 2 threads, $connections connections, ${seconds}s per run, POST with a 1 KiB body; $rounds rounds"
printf "| %-44s | %10s | %8s | %8s |\n" "target" "req/s" "p50" "p99"
for round in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do
    run "round $round: ${label[$name]}" "http://127.0.0.1:${port[$name]}/" -H "Authorization: Bearer ${cap[$name]}"
    total[$name]=$((total[$name] + last_rps))
  done
  order=("${order[@]:1}" "${order[0]}")  # each target in each place of the round, in turn
done

echo
off_mean=$((total[off] / rounds))
for name in off file stdout; do
  mean=$((total[$name] / rounds))
  printf "mean req/s, %-7s %8d (%+.1f%% against no audit log)\n" "$name:" "$mean" \
    "$(python3 -c "print(100 * ($mean - $off_mean) / $off_mean)")"
done

# A metric's value from an instance's /metrics ("0" when absent).
metric() {  # port name labels
  curl -s "http://127.0.0.1:$1/metrics" | awk -v series="$2{$3}" '$1 == series {print $2; found=1} END {if (!found) print 0}'
}

echo
sleep 1  # the writers catch up with the last round
for target in "file $file_port $work/audit.log" "stdout $stdout_port $work/stdout.out"; do
  read -r name port output <<<"$target"
  written=$(metric "$port" membraned_audit_records_total 'result="written"')
  dropped=$(metric "$port" membraned_audit_records_total 'result="dropped"')
  invocations=$(metric "$port" membraned_requests_total 'code="200",operation="invoke"')
  lines=$(grep -c '^{' "$output" || true)
  printf "%-7s records written %s, dropped %s; lines %s; invocations answered 200: %s\n" \
    "$name:" "$written" "$dropped" "$lines" "$invocations"
done
