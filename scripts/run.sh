#!/usr/bin/env bash
# Quick start, command 1: install what is missing (the build and runtime packages only), build
# the release preset, start membraned (SQLite in ./var) and print the first tenant's
# capabilities. Extra arguments go to `membraned serve`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
membraned_install_packages build runtime
membraned_build release
cd "$MEMBRANED_ROOT"
data_dir="${MEMBRANED_DATA_DIR:-./var}"
./build/release/server/membraned serve "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
for _ in $(seq 1 100); do
  [ -f "$data_dir/first-tenant.json" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -f "$data_dir/first-tenant.json" ]; then
  echo "The first tenant's capabilities ($data_dir/first-tenant.json, keep them secret):"
  cat "$data_dir/first-tenant.json"
fi
status=0
wait "$pid" || status=$?
# A signal interrupted the first wait: wait for membraned's own exit.
if kill -0 "$pid" 2>/dev/null; then wait "$pid" || status=$?; fi
exit "$status"
