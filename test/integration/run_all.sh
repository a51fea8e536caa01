#!/usr/bin/env bash
# Runs every test of `make test` on the dev (ASan+UBSan) build: unit tests, fuzz-corpus replays,
# benchmark smoke runs, integration tests (real gateways on loopback), then the format check.
set -uo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
(cd build/dev && ctest --output-on-failure -j 2 --timeout 900) || status=1
if git ls-files '*.cpp' '*.h' | xargs clang-format --dry-run --Werror 2>/tmp/tianhe-format.log; then
  echo "format check: ok"
else
  echo "format check: files need clang-format (run 'make format'):"
  grep -o '^[^:]*' /tmp/tianhe-format.log | sort -u | head -20
  status=1
fi
exit $status
