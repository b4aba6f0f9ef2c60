#!/usr/bin/env bash
# Installs what freezer needs on a fresh Debian machine: system tools and a venv in .venv.
# Usage: tools/setup-env.sh [agent|demo|test]
#   agent  the agent alone: tar, compressors, openssl; freezer and its Python dependencies
#   demo   the agent plus what tools/demo.sh ftp|ftps|sftp starts: pyftpdlib and OpenSSH's server
#   test   everything the test suite uses (the default; tools/run-tests.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-test}

tools="tar:tar gzip:gzip bzip2:bzip2 xz:xz-utils zstd:zstd openssl:openssl"
case "$profile" in
  agent) extra="" ;;
  demo)  tools="$tools sshd:openssh-server ssh-keygen:openssh-client sftp:openssh-client"; extra="[demo]" ;;
  test)  tools="$tools pigz:pigz sshd:openssh-server ssh-keygen:openssh-client sftp:openssh-client"
         tools="$tools vsftpd:vsftpd memcached:memcached patch:patch"
         tools="$tools chromium:chromium chromedriver:chromium-driver"; extra="[test]" ;;
  *) echo "usage: tools/setup-env.sh [agent|demo|test]" >&2; exit 2 ;;
esac

# apt-get waits for a dpkg lock held by another apt process (unattended-upgrades on a fresh
# machine) for up to 5 minutes, and the whole command is tried again if the lock still wins.
apt_patiently() {
  local attempt log
  log=$(mktemp)
  for attempt in 1 2 3 4 5 6; do
    if $sudo "$@" -o DPkg::Lock::Timeout=300 >"$log" 2>&1; then
      rm -f "$log"; return 0
    fi
    if ! grep -qiE "could not get lock|unable to acquire|lock-frontend|is another process using it" "$log"; then
      cat "$log" >&2; rm -f "$log"; return 1
    fi
    echo "another apt/dpkg process holds the lock: waiting 20 s (attempt $attempt of 6)" >&2
    sleep 20
  done
  cat "$log" >&2; rm -f "$log"; return 1
}

missing=()
for pair in $tools; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  apt_patiently apt-get update -qq
  apt_patiently env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
log=.venv/install.log
if ! { .venv/bin/pip install --upgrade pip && .venv/bin/pip install -e ".$extra"; } >"$log" 2>&1; then
  tail -n 30 "$log"; echo "pip install failed: see $log" >&2; exit 1
fi

# The test profile also builds .venv-upstream: upstream freezer (../shared/third_party/freezer) with
# contrib/upstream-freezer/*.patch applied, for freezer/tests/functional/test_upstream_agent.py.
# Without the upstream tree that test skips; a failed build is left for the test to retry and report.
upstream_tree=${FREEZER_UPSTREAM_DIR:-../shared/third_party/freezer}
if [ "$profile" = test ] && [ -f "$upstream_tree/setup.cfg" ]; then
  contrib/upstream-freezer/build-venv.sh || echo "warning: the patched upstream freezer venv was not built" >&2
fi
