#!/usr/bin/env bash
# One bounded fuzz run, as ctest runs it on every test run:
#   tests/fuzz/run.sh BINARY NAME SECONDS OUT_DIR
# Fuzzes BINARY (the fuzz preset's fuzz_NAME) for SECONDS with a fixed seed, one process, starting
# from the committed seeds (corpus/NAME) and the reproducers of crashes found before
# (regressions/NAME), which it therefore also replays. What it learns goes to a scratch corpus in
# OUT_DIR/runs/NAME (the committed one is never written); a failing input goes to
# OUT_DIR/artifacts/NAME/. Exit status: libFuzzer's (0 only if nothing was found).
set -euo pipefail

if [ "$#" -ne 4 ]; then
  echo "usage: $0 BINARY NAME SECONDS OUT_DIR" >&2
  exit 2
fi
binary="$1" name="$2" seconds="$3" out="$4"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ ! -x "$binary" ]; then
  echo "fuzz: $binary is missing: build the fuzz preset (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
  exit 1
fi

# max_len and dictionary from targets.txt.
read -r _ _ _ max_len dictionary < <(grep -E "^${name}[[:space:]]" "$here/targets.txt")
options=(-seed=1 -max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=2048
         -print_final_stats=1)
[ "$dictionary" != "-" ] && options+=(-dict="$here/dict/$dictionary")

scratch="$out/runs/$name"
artifacts="$out/artifacts/$name"
rm -rf "$scratch"
mkdir -p "$scratch" "$artifacts"
inputs=("$scratch" "$here/corpus/$name")
[ -d "$here/regressions/$name" ] && inputs+=("$here/regressions/$name")

# The test preset's sanitizer options hold; leaks are reported (libFuzzer checks each input).
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}:detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1"

status=0
"$binary" "${options[@]}" -artifact_prefix="$artifacts/" "${inputs[@]}" || status=$?
if [ "$status" -ne 0 ]; then
  echo
  echo "fuzz: $name found a failing input (exit status $status), kept in $artifacts/:"
  ls -l "$artifacts" >&2 || true
  echo "  replay it:        $binary $artifacts/<file>"
  echo "  keep it as a test: copy it to tests/fuzz/regressions/$name/ (replayed by every test run),"
  echo "                     fix the bug, and add a unit test for it (see docs/fuzzing.md)"
fi
exit "$status"
