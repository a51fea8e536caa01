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
# The files that include SpiderMonkey's headers are left out: clang-tidy 14 (unlike clang 14)
# answers __has_builtin(__builtin_ctz) with false, and mozilla/MathAlgorithms.h then stops with
# an #error, so nothing of them could be checked. GCC still builds them with -Wall -Werror.
skip='^src/codecs/(js/js_(engine|codec)|wasm/wasm_codec)\.cpp$'
git ls-files 'src/*.cpp' | grep -Ev "$skip" | xargs -P "$(nproc)" -n 4 clang-tidy -p "$db" --quiet \
  --extra-arg=-Wno-unknown-warning-option >"$out" 2>&1
# clang-tidy prints "N warnings generated." for diagnostics it suppressed in headers outside src/.
findings=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' "$out" | sort -u)
if [ -z "$findings" ] && ! grep -qE '^Error (while processing|parsing)' "$out"; then
  echo "tidy: $(git ls-files 'src/*.cpp' | grep -Evc "$skip") files, no findings (3 SpiderMonkey files left out)"
  exit 0
fi
grep -E '^Error (while processing|parsing)' "$out" | sort -u
echo "$findings"
echo "tidy: $(echo "$findings" | grep -c . ) findings (see .clang-tidy for the checks)"
exit 1
