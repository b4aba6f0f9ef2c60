#!/usr/bin/env bash
# The SFTP/SSH tests against the lowest and the highest paramiko that setup.cfg allows, each in a venv
# of its own (paramiko_adapter.py reaches into paramiko's internals: a new release must pass here first).
# Usage: tools/test-paramiko.sh [VERSION...]   (default: the lower bound, and the newest release allowed)
# Needs what tools/setup-env.sh demo installs (sshd); the venvs go to ${PARAMIKO_VENVS:-/tmp}/venv-paramiko*.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
tests="freezer/tests/functional/test_sftp.py freezer/tests/functional/test_known_hosts_markers.py
       freezer/tests/functional/test_wan_relay.py"

allowed=$(sed -n 's/^ *\(paramiko>=[^ ]*\) *$/\1/p' setup.cfg)   # e.g. paramiko>=3.4,<5.2
lowest=${allowed#paramiko>=}; lowest=${lowest%%,*}
specs=("paramiko==$lowest" "$allowed")
[ $# -gt 0 ] && specs=("${@/#/paramiko==}")

rc=0
for spec in "${specs[@]}"; do
  venv="${PARAMIKO_VENVS:-/tmp}/venv-$(echo "$spec" | tr -c 'a-zA-Z0-9.\n' '_')"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/pip" install -q -e "$root[demo]" testtools "$spec"
  version=$("$venv/bin/python" -c 'import paramiko; print(paramiko.__version__)')
  echo "== paramiko $version ($spec)"
  # shellcheck disable=SC2086  # one word per test file
  if PATH="$venv/bin:$PATH" "$venv/bin/python" -m testtools.run $tests; then
    echo "== paramiko $version: passed"
  else
    echo "== paramiko $version: FAILED"; rc=1
  fi
done
exit $rc
