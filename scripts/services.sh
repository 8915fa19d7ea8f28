#!/usr/bin/env bash
# Start the services the tests need when they are not running: PostgreSQL, Redis, pcscd.
# There is no systemd here; each is started directly. A service that cannot start is an error.
set -euo pipefail

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_ready; then
  echo "services: starting PostgreSQL"
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -z "$ver" ]; then echo "services: PostgreSQL is not installed" >&2; exit 1; fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster "$ver" main start
  for _ in $(seq 30); do pg_ready && break; sleep 1; done
  pg_ready || { echo "services: PostgreSQL did not come up" >&2; exit 1; }
fi
# trust auth for the local test user is how this machine is set up; check we can connect
psql -h 127.0.0.1 -U postgres -d postgres -qtAc "select 1" >/dev/null

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "services: Redis did not come up" >&2; exit 1; }
fi

if ! pidof pcscd >/dev/null 2>&1; then
  echo "services: starting pcscd"
  mkdir -p /run/pcscd
  pcscd
  sleep 1
  pidof pcscd >/dev/null || { echo "services: pcscd did not start" >&2; exit 1; }
fi
# pcscd must have loaded the vpcd driver (it listens for the virtual card on 35963); a pcscd that
# came up without it (seen once, started while another was going) is restarted
vpcd_listening() { ss -ltn 2>/dev/null | grep -q ':35963 '; }
if ! vpcd_listening; then
  echo "services: pcscd has no vpcd reader; restarting it"
  pkill -x pcscd || true
  for _ in $(seq 20); do pidof pcscd >/dev/null 2>&1 || break; sleep 0.25; done
  mkdir -p /run/pcscd
  pcscd
  for _ in $(seq 20); do vpcd_listening && break; sleep 0.5; done
  vpcd_listening || { echo "services: pcscd did not load vpcd (is vsmartcard-vpcd installed?)" >&2; exit 1; }
fi
