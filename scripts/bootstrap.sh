#!/usr/bin/env bash
# Installs everything the demo and the test suite need, idempotently:
#   Debian packages (systemd-nspawn test hosts, ssh, sqlite3, chromium for the dashboard test),
#   a virtualenv in .venv with the project and its pinned dependencies (constraints.txt).
# Usage: scripts/bootstrap.sh [--no-apt]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(debootstrap systemd-container openssh-client openssh-server sqlite3 chromium chromium-driver
              util-linux iproute2 procps curl git)

if [[ "${1:-}" != "--no-apt" ]]; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "bootstrap: need root to install Debian packages: ${missing[*]}" >&2
      exit 1
    fi
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: Python 3.11+ is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
stamp=.venv/.helios-deps-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
  echo "bootstrap: installing Python packages into .venv (pinned by constraints.txt)"
  pip_log=$(mktemp)
  pip_install() {  # a failed install stops bootstrap with pip's own words, never silently
    if ! .venv/bin/python -m pip install -q "$@" >"$pip_log" 2>&1; then
      grep -v "^WARNING: Location" "$pip_log" >&2 || true
      echo "bootstrap: pip install $* failed" >&2
      rm -f "$pip_log"
      exit 1
    fi
  }
  pip_install --upgrade "pip>=24"
  pip_install -c constraints.txt -e '.[ops,dev]'
  rm -f "$pip_log"
  .venv/bin/python -c 'import helios, invoke, paramiko, ansible, molecule' >/dev/null
  rm -f .venv/.helios-deps-*
  touch "$stamp"
fi
