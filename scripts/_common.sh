# Shared by install.sh and install-test-deps.sh (sourced, not run).
# Targets a stock Debian 12: its /usr/bin/python3 refuses `pip install`
# outside a virtual environment (PEP 668, "externally-managed-environment"),
# and the venv module only works once the python3-venv package is installed.

VENV=.venv
SYSTEM_PYTHON=${MAILSPEC_PYTHON:-/usr/bin/python3}
[ -x "$SYSTEM_PYTHON" ] || SYSTEM_PYTHON=$(command -v python3)

# apt_install PACKAGE...: installs the Debian packages that are missing.
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # dpkg needs ldconfig and start-stop-daemon, which live in sbin; a clean
  # environment (env -i PATH=/usr/bin:/bin) does not have them on PATH.
  export PATH="$PATH:/usr/sbin:/sbin"
  # Debian starts a daemon when its package is installed; the tests start
  # their own instances on loopback, so keep the package scripts from
  # starting system services (policy-rc.d exit 101 = "not allowed").
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  echo "installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ $created_policy -eq 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
}

# The shared libraries the unpacked Postfix, Exim and OpenSMTPD binaries of
# the SMTP interop tests link against (their .debs' library Depends). Plain
# library packages that conflict with nothing; a fresh Debian 12 lacks some
# (libgnutls-dane0, libevent-2.1-7, ...).
MTA_LIBRARIES="libdb5.3 libicu72 libnsl2 libsasl2-2 libssl3 libcrypt1 libgnutls-dane0 \
libgnutls30 libidn12 libidn2-0 libpcre2-8-0 libevent-2.1-7 libpam0g"

# make_venv: ./.venv from the system Python, with python3-venv if needed.
make_venv() {
  if ! "$SYSTEM_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    "$SYSTEM_PYTHON" -m venv "$VENV"
  fi
}

# pip_install ARGS...: into the venv, quietly.
pip_install() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"
}
