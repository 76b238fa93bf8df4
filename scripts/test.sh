#!/usr/bin/env bash
# Quick start, command 2: the same set-up, then every test on the ASan + UBSan build, the fuzzers
# (the fuzz preset, clang) included: ctest runs each for a few seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
membraned_install_packages
membraned_build asan
membraned_build fuzz
cd "$MEMBRANED_ROOT"
exec ctest --preset asan "$@"
