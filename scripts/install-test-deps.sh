#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine:
# the real POP3 clients and servers used by the interoperability tests
# (Debian packages) and this project with its test extras (PyPI).
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(fetchmail mpop getmail6 dovecot-pop3d mailutils-pop3d)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Debian starts a daemon when its package is installed; the tests start
  # their own instances on loopback, so keep the package scripts from
  # starting system services (policy-rc.d exit 101 = "not allowed").
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ $created_policy -eq 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
