#!/usr/bin/env bash
# The whole test suite: lint, unit and functional tests against real servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-env.sh test
export PATH="$PWD/.venv/bin:$PATH"
ruff check freezer freezer_ui_ftp benchmarks
rc=0
stestr run --concurrency "${FREEZER_TEST_WORKERS:-2}" "$@" || rc=$?
# One plain closing line that any CI reads.
stestr last --subunit | subunit2pyunit >/dev/null 2>&1 || true
summary=$(stestr last 2>/dev/null | tail -n 20)
passed=$(echo "$summary" | sed -n 's/^ - Passed: \([0-9]*\).*/\1/p')
failed=$(echo "$summary" | sed -n 's/^ - Failed: \([0-9]*\).*/\1/p')
echo "${passed:-0} passed, ${failed:-0} failed"
exit $rc
