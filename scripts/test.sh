#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: set-up, services, lint, types, tests.
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh -k card    extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
# loadscope: a module runs on one worker (the browser module walks one kiosk through its screens);
# PC/SC tests in different modules take turns on the one virtual reader through the bridge's lock
.venv/bin/pytest -n 2 --dist loadscope -m "not cluster" "$@"
# the HA topology (scripts/cluster.sh: Patroni + etcd, Redis + Sentinel, HAProxy, 2 servers) under
# faults: fixed loopback ports and the whole machine's CPU, so alone and after the rest
echo "== pytest (cluster)"
rc=0
.venv/bin/pytest -p no:xdist -m cluster tests/cluster "$@" || rc=$?
[ "$rc" -eq 5 ] && rc=0  # extra arguments (-k …) that select no cluster test
exit "$rc"
