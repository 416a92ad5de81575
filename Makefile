# The two commands of the README. Each installs what it needs (Debian packages, .venv) by itself.
#   make demo   brings up a local systemd test host, deploys Helios to it in PAPER, ends with `invoke status`
#   make test   the whole test suite (lint, types, unit, service, LIVE path against the double, deploys on real hosts)

.PHONY: demo test bootstrap bench

bootstrap:
	scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/invoke demo

test: bootstrap
	scripts/test.sh

bench: bootstrap
	scripts/bench.sh
