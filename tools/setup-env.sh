#!/usr/bin/env bash
# Installs what freezer and its tests need on a fresh Debian machine: system tools and a venv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in tar:tar gzip:gzip bzip2:bzip2 xz:xz-utils zstd:zstd pigz:pigz openssl:openssl \
            sshd:openssh-server ssh-keygen:openssh-client sftp:openssh-client vsftpd:vsftpd memcached:memcached patch:patch \
            chromium:chromium chromedriver:chromium-driver; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
log=.venv/install.log
if ! { .venv/bin/pip install --upgrade pip && .venv/bin/pip install -e '.[test]'; } >"$log" 2>&1; then
  tail -n 30 "$log"; echo "pip install failed: see $log" >&2; exit 1
fi
