#!/usr/bin/env bash
# A soak run (not part of the tests): membraned (release build) under mixed management and
# invocation load with revocations for DURATION seconds (default 600), sampling RSS and open
# descriptors every SAMPLE seconds; fails unless they stay flat and every answer is one the load
# expects (bench/soak.py has the details). Results go in docs/benchmarks.md.
#   bench/soak.sh [BINARY] [DURATION] [SAMPLE]
set -euo pipefail
binary="$(realpath "${1:-build/release/server/membraned}")"
exec python3 "$(dirname "${BASH_SOURCE[0]}")/soak.py" "$binary" "${2:-600}" "${3:-10}"
