#!/usr/bin/env bash
# The demo: set up (Debian packages, .venv), then run the central server (embedded SQLite +
# in-process store) with a demo dataset, and the kiosk, in the foreground until Ctrl-C.
# Options go to `python -m testbed.demo` (--dir, --port, --kiosk-port, --kiosk-2026-port, --people, --host, --reuse,
# --faces).
# See docs/demo.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m testbed.demo "$@"
