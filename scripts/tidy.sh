#!/usr/bin/env bash
# clang-tidy over every source file with the checks of .clang-tidy (each finding is an error).
# Uses the dev build's compile commands (make build-dev first: generated headers come from it);
# its GCC-only warning flags are ignored. Prints the findings and exits 1 if there are any.
set -uo pipefail
cd "$(dirname "$0")/.."
db=${TIDY_BUILD:-build/dev}
[ -f "$db/compile_commands.json" ] || { echo "tidy: $db/compile_commands.json is missing: run 'make build-dev' first" >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
git ls-files 'src/*.cpp' | xargs -P "$(nproc)" -n 4 clang-tidy -p "$db" --quiet \
  --extra-arg=-Wno-unknown-warning-option >"$out" 2>&1
# clang-tidy prints "N warnings generated." for diagnostics it suppressed in headers outside src/.
findings=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' "$out" | sort -u)
if [ -z "$findings" ] && ! grep -qE '^Error (while processing|parsing)' "$out"; then
  echo "tidy: $(git ls-files 'src/*.cpp' | wc -l) files, no findings"
  exit 0
fi
grep -E '^Error (while processing|parsing)' "$out" | sort -u
echo "$findings"
echo "tidy: $(echo "$findings" | grep -c . ) findings (see .clang-tidy for the checks)"
exit 1
