#!/usr/bin/env bash
# Installs what is missing (Debian 12 packages, by name) and builds one CMake preset.
#   scripts/setup.sh [release|asan|fuzz]...
# Sourced by run.sh and test.sh; safe to run again: it installs nothing already present.
set -euo pipefail

MEMBRANED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Everything the project builds, tests and runs with. One list, so the Dockerfile, CI and a new
# user's machine all get the same.
MEMBRANED_PACKAGES=(
  g++ cmake ninja-build pkg-config ca-certificates openssl python3 curl jq
  libboost1.81-dev libboost-url1.81-dev libssl-dev nlohmann-json3-dev libsqlite3-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libyaml-cpp-dev
  prometheus-cpp-dev libexpat1-dev
  libtomlplusplus-dev  # the --config file (used header-only: nothing to install where membraned runs)
  postgresql libpq-dev  # the shared store (issue 9); the tests start a throwaway cluster with initdb + pg_ctl
  haproxy  # the balancer of deploy/compose-ha.yml, run in front of several instances by the tests
  python3-botocore  # the independent SigV4 judge of the end-to-end tests (runs on /usr/bin/python3)
  clang-14 libclang-rt-14-dev  # the fuzz preset: libFuzzer with ASan + UBSan (tests/fuzz, docs/fuzzing.md)
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

membraned_install_packages() {
  local missing=()
  for pkg in "${MEMBRANED_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  # Node.js and npm run the original capability-sdk in the end-to-end tests; a machine that
  # already has them (from any source) keeps its own.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

membraned_build() {
  local preset="$1"
  (cd "$MEMBRANED_ROOT" && cmake --preset "$preset" >/dev/null && cmake --build --preset "$preset")
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  membraned_install_packages
  for preset in "${@:-release}"; do
    membraned_build "$preset"
  done
fi
