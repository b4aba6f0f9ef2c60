#!/usr/bin/env bash
# The main job: back up a sample directory, change it, back up again (level 1), restore, compare.
# Usage: tools/demo.sh [local|ftp|ftps|sftp]   (servers for ftp/ftps/sftp are started on 127.0.0.1)
# Installs only what the agent needs (and, for ftp/ftps/sftp, the throw-away server); the test
# suite's packages come with tools/run-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-local}
if [ "$kind" = local ]; then tools/setup-env.sh agent; else tools/setup-env.sh demo; fi
exec .venv/bin/python -m freezer.tools.demo "$kind"
