#!/usr/bin/env bash
# Builds a venv holding upstream freezer at the pinned commit with this directory's patches applied
# (git am), for the end-to-end test freezer/tests/functional/test_upstream_agent.py.
# Usage: contrib/upstream-freezer/build-venv.sh [VENV]     (default VENV: .venv-upstream in the checkout)
# The upstream tree comes from $FREEZER_UPSTREAM_DIR, default ../shared/third_party/freezer beside the
# checkout; exit status 3 when it is absent. A venv already built from the same pin and patches is kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${1:-$repo/.venv-upstream}
src=${FREEZER_UPSTREAM_DIR:-$repo/../shared/third_party/freezer}
if [ ! -f "$src/setup.cfg" ]; then
  echo "no upstream freezer tree at $src (set FREEZER_UPSTREAM_DIR)" >&2
  exit 3
fi

# one build at a time: test workers running in parallel may all find the venv missing
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

stamp=$( { cat "$src.PIN" 2>/dev/null || true; cat "$here"/*.patch; } | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/freezer-agent" ] && [ "$(cat "$venv/upstream-patches.sha256" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/freezer"
cd "$work/freezer"
export GIT_AUTHOR_NAME=build GIT_AUTHOR_EMAIL=build@localhost GIT_COMMITTER_NAME=build GIT_COMMITTER_EMAIL=build@localhost
git init -q && git add -A && git commit -qm "openstack/freezer (pinned tree)"
git am -q "$here"/*.patch

rm -rf "$venv"
python3 -m venv "$venv"
log="$venv/install.log"
if ! "$venv/bin/pip" install -r requirements.txt . >"$log" 2>&1; then
  tail -n 30 "$log"
  echo "pip install of the patched upstream freezer failed: see $log" >&2
  exit 1
fi
echo "$stamp" >"$venv/upstream-patches.sha256"
