#!/usr/bin/env bash
# Fuzzing on purpose, longer than the test run's few seconds per target (docs/fuzzing.md):
#   scripts/fuzz.sh [TARGET|all] [SECONDS]   fuzz each target SECONDS (default: all, 600 s each)
#   scripts/fuzz.sh --list                   the targets (tests/fuzz/targets.txt)
#   scripts/fuzz.sh --merge TARGET           add what the hunts learnt to the committed seeds
#   scripts/fuzz.sh --build-only             build the fuzz preset (what ctest's fuzz_build runs)
# FUZZ_JOBS (default 2): fuzzing processes per target. What a hunt learns stays in
# build/fuzz/hunt/TARGET/corpus for the next one; failing inputs go to build/fuzz/hunt/TARGET/crashes/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$MEMBRANED_ROOT"

targets_file=tests/fuzz/targets.txt
build=build/fuzz
jobs="${FUZZ_JOBS:-2}"

targets() { grep -E '^[a-z]' "$targets_file" | awk '{print $1}'; }
field() { grep -E "^$1[[:space:]]" "$targets_file" | awk -v n="$2" '{print $n}'; }

build_fuzzers() {
  # Configured once; after that ninja re-runs CMake itself when a CMakeLists.txt changes.
  [ -f "$build/build.ninja" ] || cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz
}

case "${1:-all}" in
  --list) targets; exit 0 ;;
  --build-only) build_fuzzers; exit 0 ;;
  --merge)
    name="${2:?usage: $0 --merge TARGET}"
    build_fuzzers
    # Only inputs that add coverage to the committed seeds are copied into them.
    "$build/tests/fuzz/fuzz_$name" -merge=1 -max_len="$(field "$name" 4)" \
      "tests/fuzz/corpus/$name" "$build/hunt/$name/corpus"
    echo "fuzz: new seeds are in tests/fuzz/corpus/$name (review, then commit them)"
    exit 0 ;;
esac

selected="${1:-all}"
seconds="${2:-600}"
if [ "$selected" = all ]; then
  names=$(targets)
else
  field "$selected" 1 | grep -q . || { echo "fuzz: no target $selected (try --list)" >&2; exit 2; }
  names="$selected"
fi

membraned_install_packages build test
build_fuzzers

found=0
for name in $names; do
  hunt="$build/hunt/$name"
  mkdir -p "$hunt/corpus" "$hunt/crashes" "$hunt/logs"
  dictionary=$(field "$name" 5)
  options=(-max_total_time="$seconds" -max_len="$(field "$name" 4)" -timeout=20 -rss_limit_mb=2048
           -use_value_profile=1 -print_final_stats=1 -jobs="$jobs" -workers="$jobs"
           -artifact_prefix="$MEMBRANED_ROOT/$hunt/crashes/")
  [ "$dictionary" != "-" ] && options+=(-dict="$MEMBRANED_ROOT/tests/fuzz/dict/$dictionary")
  inputs=("$MEMBRANED_ROOT/$hunt/corpus" "$MEMBRANED_ROOT/tests/fuzz/corpus/$name")
  [ -d "tests/fuzz/regressions/$name" ] && inputs+=("$MEMBRANED_ROOT/tests/fuzz/regressions/$name")
  echo "fuzz: $name for ${seconds}s with $jobs jobs (logs in $hunt/logs)"
  # libFuzzer's -jobs write fuzz-N.log into the current directory.
  (cd "$hunt/logs" && "$MEMBRANED_ROOT/$build/tests/fuzz/fuzz_$name" "${options[@]}" "${inputs[@]}") >"$hunt/logs/main.log" 2>&1 || true
  if [ -n "$(ls -A "$hunt/crashes")" ]; then
    found=1
    echo "fuzz: $name FOUND failing inputs:"
    ls -1 "$hunt/crashes" | sed "s|^|  $hunt/crashes/|"
  fi
done

if [ "$found" -ne 0 ]; then
  cat <<EOT
fuzz: to turn a failing input into a regression test:
  1. replay it:     $build/tests/fuzz/fuzz_TARGET FILE   (the sanitizer's report says where)
  2. shrink it:     $build/tests/fuzz/fuzz_TARGET -minimize_crash=1 -runs=100000 FILE
  3. keep it:       copy it to tests/fuzz/regressions/TARGET/ (every test run replays it)
  4. fix the bug, with a unit test in tests/unit/ that names what was wrong
EOT
  exit 1
fi
echo "fuzz: nothing found"
