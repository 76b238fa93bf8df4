#!/usr/bin/env bash
# Quick start, command 2: the same set-up plus the test toolchain (PostgreSQL, HAProxy, Node.js
# and npm, botocore, googletest, benchmark, clang, podman...), then every test on the ASan + UBSan
# build, the fuzzers (the fuzz preset, clang) and the container image (scripts/container-test.sh)
# included.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
membraned_install_packages build runtime tutorial test
membraned_build asan
membraned_build fuzz
cd "$MEMBRANED_ROOT"
exec ctest --preset asan "$@"
