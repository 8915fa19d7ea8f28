#!/usr/bin/env bash
# The high-availability topology on one machine, on loopback ports (contract: Commands):
#   etcd x3, PostgreSQL 15 x3 under Patroni (synchronous_mode), Redis master + replica,
#   Sentinel x3, shikaku-server x2, HAProxy (API on http://127.0.0.1:8800).
#   scripts/cluster.sh up       start what is not running (idempotent); waits for /readyz
#   scripts/cluster.sh status   JSON: {api, database_url, members: [...], redis: {master}}
#   scripts/cluster.sh down     stop everything and remove the state directory
# Configuration is rendered from the production templates in deploy/ha/ (no copies).
# State (data, logs, pid files): $SHIKAKU_CLUSTER_DIR, default /tmp/shikaku-cluster.
# Server processes: $SHIKAKU_CLUSTER_WORKERS workers each (default 1: this machine has 2 cores
# for 3 PostgreSQL, 2 Redis, 3 sentinels, 3 etcd and 2 servers).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TEMPLATES=$ROOT/deploy/ha
STATE=${SHIKAKU_CLUSTER_DIR:-/tmp/shikaku-cluster}
RUN=$STATE/run
LOGS=$STATE/log
WORKERS=${SHIKAKU_CLUSTER_WORKERS:-1}
PG_BIN_DIR=${SHIKAKU_PG_BIN_DIR:-/usr/lib/postgresql/15/bin}
H=127.0.0.1
if [ -n "${SHIKAKU_PYTHON:-}" ]; then PY=$SHIKAKU_PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
else PY=$(command -v python3); fi

API_PORT=8800
SERVER_PORTS=(8801 8802)
ETCD_CLIENT_PORTS=(2479 2489 2499)
ETCD_PEER_PORTS=(2480 2490 2500)
PG_PORTS=(5433 5434 5435)
REST_PORTS=(8008 8009 8010)
PG_PRIMARY_PORT=5440
PG_REPLICA_PORT=5441
HAPROXY_STATS_PORT=8404
REDIS_PORTS=(6390 6391)
SENTINEL_PORTS=(26390 26391 26392)
SERVICE=shikaku
DATABASE_URL="postgresql+psycopg2://postgres@$H:$PG_PRIMARY_PORT/shikaku"
REDIS_URL="redis+sentinel://$H:${SENTINEL_PORTS[0]},$H:${SENTINEL_PORTS[1]},$H:${SENTINEL_PORTS[2]}/$SERVICE/0"

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# render TEMPLATE OUT: fill the template's ${VAR}s from the environment; an unset one is an error
render() {
  local vars v
  vars=$(grep -o '\${[A-Z0-9_]*}' "$1" | sort -u | tr -d '${}')
  for v in $vars; do [ -n "${!v+x}" ] || die "render $(basename "$1"): $v is not set"; done
  envsubst "$(printf '${%s} ' $vars)" <"$1" >"$2"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# start NAME CMD...: run CMD detached (own session, no inherited descriptors), pid in $RUN/NAME.pid
start() {
  local name=$1; shift
  alive "$RUN/$name.pid" && return 0
  setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

wait_for() {  # wait_for SECONDS WHAT CMD...
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "$what did not come up in ${limit}s (logs: $LOGS)"
    sleep 0.5
  done
}

install_packages() {
  local missing=()
  command -v patroni >/dev/null || missing+=(patroni)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
  command -v envsubst >/dev/null || missing+=(gettext-base)
  [ -x "$PG_BIN_DIR/postgres" ] || missing+=(postgresql-15)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then apt-get update -q; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

secret() {  # secret NAME: a random password kept in the state directory
  local f=$STATE/secrets/$1
  [ -s "$f" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$f")
  cat "$f"
}

up_etcd() {
  local i cluster="" hosts=""
  for i in 0 1 2; do
    cluster+="${cluster:+,}etcd$i=http://$H:${ETCD_PEER_PORTS[$i]}"
    hosts+="${hosts:+,}$H:${ETCD_CLIENT_PORTS[$i]}"
  done
  ETCD_HOSTS_LIST=$hosts
  for i in 0 1 2; do
    alive "$RUN/etcd$i.pid" && continue
    mkdir -p "$STATE/etcd$i"
    ETCD_NAME=etcd$i ETCD_DATA_DIR=$STATE/etcd$i/data ETCD_HOST=$H \
      ETCD_CLIENT_PORT=${ETCD_CLIENT_PORTS[$i]} ETCD_PEER_PORT=${ETCD_PEER_PORTS[$i]} \
      ETCD_INITIAL_CLUSTER=$cluster PATRONI_SCOPE=$SERVICE ETCD_HEARTBEAT_MS=100 ETCD_ELECTION_MS=1000 \
      render "$TEMPLATES/etcd.env.tmpl" "$STATE/etcd$i/etcd.env"
    start "etcd$i" env -i PATH="$PATH" bash -c "set -a; . '$STATE/etcd$i/etcd.env'; exec etcd"
  done
  for i in 0 1 2; do
    wait_for 60 "etcd$i" curl -fsS "http://$H:${ETCD_CLIENT_PORTS[$i]}/health"
  done
}

up_patroni() {
  local i
  install -d -o postgres -g postgres -m 700 "$STATE/pg" "$STATE/pg/run"
  for i in 0 1 2; do
    alive "$RUN/pg$i.pid" && continue
    install -d -o postgres -g postgres -m 700 "$STATE/pg/pg$i"
    NODE_NAME=pg$i NODE_HOST=$H PATRONI_SCOPE=$SERVICE PATRONI_REST_PORT=${REST_PORTS[$i]} \
      ETCD_HOSTS=$ETCD_HOSTS_LIST PATRONI_TTL=20 PATRONI_LOOP_WAIT=2 PATRONI_RETRY_TIMEOUT=5 \
      PG_MAX_CONNECTIONS=200 PG_SHARED_BUFFERS=128MB PG_WAL_SENDER_TIMEOUT=5s PG_PORT=${PG_PORTS[$i]} \
      PG_DATA_DIR=$STATE/pg/pg$i/data PG_BIN_DIR=$PG_BIN_DIR PG_PGPASS=$STATE/pg/pg$i/pgpass \
      PG_SUPERUSER_PASSWORD=$(secret postgres) PG_REPLICATION_PASSWORD=$(secret replicator) \
      PG_REWIND_PASSWORD=$(secret rewinder) PG_SOCKET_DIR=$STATE/pg/run \
      PG_HBA_NETWORK=127.0.0.1/32 PG_AUTH_METHOD=trust \
      render "$TEMPLATES/patroni.yml.tmpl" "$STATE/pg/pg$i/patroni.yml"
    chown postgres:postgres "$STATE/pg/pg$i/patroni.yml"
    touch "$RUN/pg$i.pid" "$LOGS/pg$i.log"
    chown postgres "$RUN/pg$i.pid" "$LOGS/pg$i.log"
    # from the member's own directory: the caller's (a clone in a 0700 mktemp directory, say) may
    # be closed to postgres, and Patroni's getcwd() then fails on every bootstrap step
    setsid runuser -u postgres -- sh -c "cd '$STATE/pg/pg$i' && echo \$\$ >'$RUN/pg$i.pid' && exec patroni '$STATE/pg/pg$i/patroni.yml'" \
      </dev/null >>"$LOGS/pg$i.log" 2>&1 &
  done
}

up_haproxy() {
  install -d "$STATE/haproxy"
  HAPROXY_PIDFILE=$RUN/haproxy.pid HAPROXY_STATS_SOCKET=$STATE/haproxy/admin.sock \
    HAPROXY_ERRORFILE_DIR=$TEMPLATES API_BIND=$H:$API_PORT \
    API1_ADDR=$H:${SERVER_PORTS[0]} API2_ADDR=$H:${SERVER_PORTS[1]} \
    PG_PRIMARY_BIND=$H:$PG_PRIMARY_PORT PG_REPLICA_BIND=$H:$PG_REPLICA_PORT \
    PG1_NAME=pg0 PG1_ADDR=$H:${PG_PORTS[0]} PG1_REST_PORT=${REST_PORTS[0]} \
    PG2_NAME=pg1 PG2_ADDR=$H:${PG_PORTS[1]} PG2_REST_PORT=${REST_PORTS[1]} \
    PG3_NAME=pg2 PG3_ADDR=$H:${PG_PORTS[2]} PG3_REST_PORT=${REST_PORTS[2]} \
    HAPROXY_STATS_BIND=$H:$HAPROXY_STATS_PORT HAPROXY_MAXCONN=4000 \
    render "$TEMPLATES/haproxy.cfg.tmpl" "$STATE/haproxy/haproxy.cfg"
  haproxy -c -q -f "$STATE/haproxy/haproxy.cfg" || die "haproxy.cfg does not check"
  alive "$RUN/haproxy.pid" && return 0
  haproxy -D -f "$STATE/haproxy/haproxy.cfg" </dev/null >>"$LOGS/haproxy.log" 2>&1
}

redis_master() {  # host:port of the master the sentinels name, or empty
  local p out
  for p in "${SENTINEL_PORTS[@]}"; do
    out=$(redis-cli -h $H -p "$p" --raw SENTINEL get-master-addr-by-name $SERVICE 2>/dev/null | paste -sd: -) || continue
    [[ $out == *:* ]] && { echo "$out"; return 0; }
  done
  return 0
}

up_redis() {
  local i master mhost mport
  master=$(redis_master)
  [ -n "$master" ] || master=$H:${REDIS_PORTS[0]}
  mhost=${master%:*}; mport=${master##*:}
  for i in 0 1; do
    alive "$RUN/redis$i.pid" && continue
    mkdir -p "$STATE/redis$i"
    # a node Sentinel has reconfigured keeps its rewritten file; a new one is rendered
    if [ ! -f "$STATE/redis$i/redis.conf" ]; then
      REDIS_BIND=$H REDIS_PORT=${REDIS_PORTS[$i]} REDIS_DIR=$STATE/redis$i REDIS_MAXMEMORY=256mb \
        render "$TEMPLATES/redis.conf.tmpl" "$STATE/redis$i/redis.conf"
    fi
    local role=()
    [ "${REDIS_PORTS[$i]}" = "$mport" ] || role=(--replicaof "$mhost" "$mport")
    start "redis$i" redis-server "$STATE/redis$i/redis.conf" "${role[@]}"
  done
  for i in 0 1; do wait_for 30 "redis$i" redis-cli -h $H -p "${REDIS_PORTS[$i]}" ping; done
  for i in 0 1 2; do
    alive "$RUN/sentinel$i.pid" && continue
    mkdir -p "$STATE/sentinel$i"
    if [ ! -f "$STATE/sentinel$i/sentinel.conf" ]; then
      SENTINEL_PORT=${SENTINEL_PORTS[$i]} SENTINEL_BIND=$H SENTINEL_DIR=$STATE/sentinel$i \
        REDIS_SERVICE=$SERVICE REDIS_MASTER_HOST=$mhost REDIS_MASTER_PORT=$mport \
        SENTINEL_DOWN_AFTER_MS=2000 SENTINEL_FAILOVER_TIMEOUT_MS=10000 \
        render "$TEMPLATES/sentinel.conf.tmpl" "$STATE/sentinel$i/sentinel.conf"
    fi
    start "sentinel$i" redis-server "$STATE/sentinel$i/sentinel.conf" --sentinel
  done
  for i in 0 1 2; do wait_for 30 "sentinel$i" redis-cli -h $H -p "${SENTINEL_PORTS[$i]}" ping; done
}

SERVER_ENV=(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" SHIKAKU_DATABASE_URL="$DATABASE_URL"
  SHIKAKU_REDIS_URL="$REDIS_URL")
# rate limits set in the caller's environment reach the servers (a load test drives one token)
while IFS= read -r var; do SERVER_ENV+=("$var=${!var}"); done < <(compgen -e | grep '^SHIKAKU_RATE_LIMIT_' || true)

has_sync_standby() {
  local p
  for p in "${REST_PORTS[@]}"; do
    curl -fsS "http://$H:$p/cluster" 2>/dev/null | grep -q '"sync_standby"' && return 0
  done
  return 1
}

up_servers() {
  wait_for 120 "the PostgreSQL primary (through HAProxy)" \
    psql -h $H -p $PG_PRIMARY_PORT -U postgres -d postgres -qtAc "select 1"
  if [ "$(psql -h $H -p $PG_PRIMARY_PORT -U postgres -d postgres -qtAc "select 1 from pg_database where datname='shikaku'")" != 1 ]; then
    psql -h $H -p $PG_PRIMARY_PORT -U postgres -d postgres -qc "create database shikaku" >/dev/null
  fi
  env "${SERVER_ENV[@]}" "$PY" -c 'from shikaku_server.admin import cli; cli()' migrate >>"$LOGS/migrate.log" 2>&1 \
    || die "migrations failed (log: $LOGS/migrate.log)"
  local i
  for i in 0 1; do
    start "server$i" env "${SERVER_ENV[@]}" "$PY" -c 'from shikaku_server.main import main; main()' \
      --no-migrate --host $H --port "${SERVER_PORTS[$i]}" --workers "$WORKERS"
  done
  wait_for 120 "a synchronous standby" has_sync_standby
  for i in 0 1; do wait_for 90 "server$i" curl -fsS "http://$H:${SERVER_PORTS[$i]}/readyz"; done
  wait_for 30 "the API (through HAProxy)" curl -fsS "http://$H:$API_PORT/readyz"
}

cmd_up() {
  install_packages
  mkdir -p "$STATE" "$RUN" "$LOGS" "$STATE/secrets"
  chmod 755 "$STATE" "$RUN" "$LOGS"
  up_etcd
  up_patroni
  up_haproxy
  up_redis
  up_servers
  cmd_status
}

cmd_status() {
  local master
  master=$(redis_master)
  REST_PORTS="${REST_PORTS[*]}" API="http://$H:$API_PORT" DATABASE_URL="$DATABASE_URL" REDIS_MASTER="$master" \
    HOST=$H python3 - <<'EOF'
import json, os, urllib.request
cluster = None
for port in os.environ["REST_PORTS"].split():
    try:
        with urllib.request.urlopen(f"http://{os.environ['HOST']}:{port}/cluster", timeout=2) as r:
            cluster = json.load(r)
        break
    except OSError:
        continue
members = [
    {"name": m["name"], "role": m["role"], "host": m["host"], "port": m["port"],
     "lag": 0 if m["role"] == "leader" else m.get("lag", "unknown")}
    for m in (cluster or {}).get("members", [])
]
print(json.dumps({"api": os.environ["API"], "database_url": os.environ["DATABASE_URL"], "members": members,
                  "redis": {"master": os.environ["REDIS_MASTER"] or None}}, indent=2))
EOF
}

stop_pidfile() {  # stop_pidfile FILE: TERM, then KILL after 20 s
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null) || return 0
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
}

cmd_down() {
  local f
  [ -d "$STATE" ] || { log "nothing to stop"; return 0; }
  for f in "$RUN"/server*.pid "$RUN"/haproxy.pid "$RUN"/sentinel*.pid "$RUN"/redis*.pid; do stop_pidfile "$f"; done
  for f in "$RUN"/pg*.pid; do stop_pidfile "$f"; done
  # a postmaster left behind by a Patroni that was killed
  for f in "$STATE"/pg/pg*/data/postmaster.pid; do
    [ -f "$f" ] && kill -9 "$(head -n1 "$f")" 2>/dev/null || true
  done
  for f in "$RUN"/etcd*.pid; do stop_pidfile "$f"; done
  rm -rf "$STATE"
  log "stopped; state removed"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
