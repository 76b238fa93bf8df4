#!/usr/bin/env bash
# Quick start, command 1: install what is missing (the build and runtime packages only), build
# the release preset, start membraned (SQLite in ./var) and print the first tenant's
# capabilities. Extra arguments go to `membraned serve` (with --init: the data directory is made
# on the first run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ -n "${MEMBRANED_BIN:-}" ]; then
  binary="$(realpath "$MEMBRANED_BIN")"  # a binary built already (the tests run this script with theirs)
else
  membraned_install_packages build runtime
  membraned_build release
  binary=./build/release/server/membraned
fi
cd "$MEMBRANED_ROOT"
# The data directory membraned will use: the last --data-dir among the arguments (a flag wins over
# the environment), else MEMBRANED_DATA_DIR, else ./var.
data_dir="${MEMBRANED_DATA_DIR:-./var}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --data-dir) data_dir="${args[i + 1]:-}" ;;
    --data-dir=*) data_dir="${args[i]#--data-dir=}" ;;
  esac
done
# membraned's output is shown as it comes and kept, to see when it listens: the capabilities are
# printed only once it does (a second start on a port in use prints its error, not old tokens).
started_log="$(mktemp)"
"$binary" serve --init "$@" > >(tee "$started_log") &
pid=$!
stopping=0
trap 'stopping=1; kill -TERM "$pid" 2>/dev/null || true' INT TERM
trap 'rm -f "$started_log"' EXIT
for _ in $(seq 1 100); do
  grep -q " listening on " "$started_log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if grep -q " listening on " "$started_log" && [ -f "$data_dir/first-tenant.json" ]; then
  echo "The first tenant's capabilities ($data_dir/first-tenant.json, keep them secret):"
  cat "$data_dir/first-tenant.json"
fi
status=0
wait "$pid" || status=$?
# A signal interrupted the first wait: membraned's own exit status is the one to give.
if [ "$stopping" = 1 ]; then
  status=0
  wait "$pid" || status=$?
fi
exit "$status"
