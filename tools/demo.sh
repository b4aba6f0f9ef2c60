#!/usr/bin/env bash
# The main job: back up a sample directory, change it, back up again (level 1), restore, compare.
# Usage: tools/demo.sh [local|ftp|ftps|sftp]   (servers for ftp/ftps/sftp are started on 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-env.sh
exec .venv/bin/python -m freezer.tools.demo "${1:-local}"
