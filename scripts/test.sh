#!/usr/bin/env bash
# The whole test suite, in the order that fails fastest. Called by `make test` (and so by .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
started=$(date +%s)
step() { printf '\n=== %s\n' "$*"; }

step "ruff"
ruff check helios helios_double helios_ops tests bench tasks.py
step "mypy --strict"
mypy
step "yamllint"
yamllint -s .
step "ansible-lint (production profile)"
ansible-lint --profile production -q ansible/ molecule/ inventory/

step "pytest: service, LIVE path, ops unit tests (parallel)"
pytest -q -n 2 -m "not sandbox" -p no:cacheprovider

if [[ $(id -u) -eq 0 ]]; then
  step "pytest: real systemd hosts (sandbox)"
  pytest -q -m sandbox -p no:cacheprovider
  step "molecule test"
  molecule test
else
  echo "SKIPPING sandbox tests and molecule: they need root (systemd-nspawn)" >&2
  exit 1
fi
printf '\nwhole suite: %ss\n' "$(( $(date +%s) - started ))"
