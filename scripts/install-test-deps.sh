#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine:
# python3-venv, the real POP3 clients and servers used by the
# interoperability tests, Chromium for the HTML report test (Debian
# packages), and this project with its test extras into ./.venv (PyPI).
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_common.sh

# swaks only recommends its TLS and SASL modules (installed without
# recommends, a fresh Debian 12 has no STARTTLS in swaks): name them.
# shellcheck disable=SC2086  # MTA_LIBRARIES is a list of package names
apt_install python3-venv git fetchmail mpop getmail6 dovecot-pop3d mailutils-pop3d swaks python3-aiosmtpd openssl \
  libnet-ssleay-perl libauthen-sasl-perl libdigest-hmac-perl $MTA_LIBRARIES \
  chromium fonts-liberation
make_venv
pip_install -e '.[test]'
