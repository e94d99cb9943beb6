#!/usr/bin/env bash
# Installs mailspec into ./.venv (a virtual environment made with the system
# Python, so it works on a stock Debian 12 where pip refuses to install
# outside one). Afterwards: .venv/bin/mailspec, .venv/bin/pytest --mailspec.
# Idempotent: an existing .venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_common.sh

make_venv
pip_install .
echo "installed: $VENV/bin/mailspec ($("$VENV/bin/mailspec" --version))" >&2
