#!/usr/bin/env bash
# Installs what is missing (Debian 12 packages, by name) and builds CMake presets.
#   scripts/setup.sh [release|asan|fuzz|bench]...   (default: release)
# release installs the build and runtime packages only; asan, fuzz and bench add the test
# toolchain. Sourced by run.sh, test.sh and the walkthrough; safe to run again: it installs
# nothing already present.
set -euo pipefail

MEMBRANED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# What the service and capi are built with (the release preset), and the man pages (help2man).
MEMBRANED_BUILD_PACKAGES=(
  g++ cmake ninja-build pkg-config help2man
  libboost1.81-dev libboost-url1.81-dev libssl-dev nlohmann-json3-dev libsqlite3-dev libpq-dev
  libcli11-dev libyaml-cpp-dev prometheus-cpp-dev libexpat1-dev
  libtomlplusplus-dev  # the --config file (used header-only: nothing to install where membraned runs)
)
# What they need to run, beyond the libraries the -dev packages bring: the CA certificates for
# HTTPS to AWS. (A host that only runs them needs the Dockerfile's runtime list instead.)
MEMBRANED_RUNTIME_PACKAGES=(ca-certificates)
# The tutorial and examples/lambda-walkthrough.sh: curl, jq, and the stand-in for Lambda, which
# checks signatures with botocore (runs on /usr/bin/python3).
MEMBRANED_TUTORIAL_PACKAGES=(curl jq python3 python3-botocore)
# Everything the tests and benchmarks add. Node.js and npm (the original capability-sdk in the
# end-to-end tests) are added by membraned_install_packages only when no node or npm is on PATH.
MEMBRANED_TEST_PACKAGES=(
  openssl  # certificates made in the tests
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  postgresql  # the shared store; the tests start a throwaway cluster with initdb + pg_ctl
  haproxy  # the balancer of deploy/compose-ha.yml, run in front of several instances by the tests
  clang-14 libclang-rt-14-dev  # the fuzz preset: libFuzzer with ASan + UBSan (tests/fuzz, docs/fuzzing.md)
  podman runc mmdebstrap  # scripts/container-test.sh: the Dockerfile built and run (no Docker engine needed)
  podman-compose  # deploy/compose-ha.yml under podman (scripts/container-test.sh --compose)
  wrk nginx  # the load scripts of bench/ (test_bench_scripts runs each for a second per step)
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# membraned_install_packages SET...: the missing packages of the sets build, runtime, tutorial, test.
membraned_install_packages() {
  local wanted=() missing=() set
  for set in "$@"; do
    case "$set" in
      build) wanted+=("${MEMBRANED_BUILD_PACKAGES[@]}") ;;
      runtime) wanted+=("${MEMBRANED_RUNTIME_PACKAGES[@]}") ;;
      tutorial) wanted+=("${MEMBRANED_TUTORIAL_PACKAGES[@]}") ;;
      test) wanted+=("${MEMBRANED_TEST_PACKAGES[@]}") ;;
      *) echo "setup: no package set $set" >&2; return 2 ;;
    esac
  done
  for pkg in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  # A machine that already has Node.js and npm (from any source) keeps its own.
  if [[ " $* " == *" test "* ]]; then
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
  fi
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "setup: installing ${#missing[@]} Debian packages and what they depend on: ${missing[*]}"
  echo "setup: (apt-get shows each download and each package set up; a first install takes minutes)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# The packages a preset needs: release is the service and capi; the others build the tests or
# the benchmarks too.
membraned_packages_for() {
  case "$1" in
    release) echo build runtime ;;
    *) echo build runtime tutorial test ;;
  esac
}

# Parallel compile jobs: one per core, as many as memory allows (a Beast-heavy unit takes up to
# about 1.5 GiB under ASan). The presets say 2, for a bare `cmake --build --preset`; MEMBRANED_JOBS
# overrides both.
membraned_jobs() {
  local cores memory_kib by_memory
  cores=$(nproc 2>/dev/null || echo 2)
  memory_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
  by_memory=$((memory_kib / (1536 * 1024)))
  [ "$by_memory" -ge 1 ] || by_memory=1
  echo "${MEMBRANED_JOBS:-$((cores < by_memory ? cores : by_memory))}"
}

membraned_build() {
  local preset="$1" started=$SECONDS jobs
  jobs=$(membraned_jobs)
  echo "setup: building the $preset preset into build/$preset with $jobs jobs (ninja counts the steps: [done/all])"
  (cd "$MEMBRANED_ROOT" && cmake --preset "$preset" >/dev/null && cmake --build --preset "$preset" --parallel "$jobs")
  echo "setup: $preset built in $((SECONDS - started)) s"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  presets=("${@:-release}")
  sets=()
  for preset in "${presets[@]}"; do
    # shellcheck disable=SC2207
    sets+=($(membraned_packages_for "$preset"))
  done
  membraned_install_packages $(printf '%s\n' "${sets[@]}" | sort -u)
  for preset in "${presets[@]}"; do
    membraned_build "$preset"
  done
fi
