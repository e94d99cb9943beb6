#!/usr/bin/env bash
# Prepares the real SMTP servers of the interoperability tests on Debian 12:
# installs python3-aiosmtpd (it conflicts with nothing) and openssl (the
# OpenSMTPD AUTH password hash: openssl passwd -6), and downloads the
# Postfix, Exim and OpenSMTPD .debs and unpacks them side by side into the
# cache (MAILSPEC_MTA_CACHE, default .cache/mta/) without installing them:
# they conflict as mail-transport-agent packages. Idempotent: what is
# already there is not fetched again. The tests do the same on first use;
# this script only does it ahead of time (e.g. before going offline).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_common.sh

# shellcheck disable=SC2086  # a list of package names
apt_install python3-aiosmtpd openssl $MTA_LIBRARIES
PY=${VENV}/bin/python
[ -x "$PY" ] || PY=$SYSTEM_PYTHON
export PATH="$PATH:/usr/sbin:/sbin"
"$PY" -m interop.smtp_servers fetch
