#!/usr/bin/env bash
# The README's first command: set this machine up, start nexus-fast in front of the local PostgreSQL and Redis
# (examples/nexus.toml), and show real clients going through it. Then it keeps running until Ctrl-C.
#
#   ./scripts/quickstart.sh                 # set up, start, demo, stay in the foreground (Ctrl-C stops it)
#   ./scripts/quickstart.sh --check         # same, but stop after the demo; exit non-zero if any step failed
#   ./scripts/quickstart.sh --no-setup      # skip scripts/setup-machine.sh (already run)
#   ./scripts/quickstart.sh --config FILE   # another nexus.toml (the test suite uses one on free ports)
set -euo pipefail
cd "$(dirname "$0")/.."

CHECK=0
SETUP=1
CONFIG=examples/nexus.toml
while [ $# -gt 0 ]; do
    case "$1" in
        --check) CHECK=1 ;;
        --no-setup) SETUP=0 ;;
        --config) CONFIG="$2"; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '\n\033[1m[quickstart] %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

if [ "$SETUP" = 1 ]; then
    say "setting up the machine (scripts/setup-machine.sh)"
    scripts/setup-machine.sh
fi

say "validating $CONFIG"
if ! problems=$(python3 -m nexus_fast config check "$CONFIG" 2>&1 >/dev/null); then echo "$problems" >&2; exit 2; fi

# Listen addresses from the config itself, so the demo follows whatever the file says.
read -r ADMIN PG_LISTEN REDIS_LISTEN PG_USER PG_DB PG_PASSWORD < <(python3 - "$CONFIG" <<'EOF'
import sys
from nexus_fast.config.load import load_config
c = load_config(sys.argv[1]).config
pg = c.postgres
redis = c.redis
user = next(iter(pg.users), "postgres") if pg else "-"
password = pg.users[user].password.get_secret_value() if pg and user in pg.users and pg.users[user].password else "-"
db = next(iter(pg.databases), "postgres") if pg else "-"
redis_listen = next(iter(redis.pools.values())).listen if redis and redis.pools else "-"
print(c.admin.listen or "-", pg.listen if pg else "-", redis_listen, user, db, password)
EOF
)
ADMIN_URL="http://${ADMIN}"

LOG=$(mktemp -t nexus-quickstart.XXXXXX.log)
say "starting nexus-fast: python3 -m nexus_fast serve -c $CONFIG   (log: $LOG)"
python3 -m nexus_fast serve -c "$CONFIG" >"$LOG" 2>&1 &
NEXUS_PID=$!

stop_nexus() {
    if kill -0 "$NEXUS_PID" 2>/dev/null; then
        kill -TERM "$NEXUS_PID" 2>/dev/null || true
        wait "$NEXUS_PID" 2>/dev/null || true
    fi
}
trap stop_nexus EXIT
trap 'say "stopping (graceful drain)"; stop_nexus; exit 0' INT TERM

for _ in $(seq 150); do
    if curl -fsS "$ADMIN_URL/ready" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$NEXUS_PID" 2>/dev/null; then
        echo "nexus-fast exited before it was ready:" >&2; cat "$LOG" >&2; exit 1
    fi
    sleep 0.2
done
curl -fsS "$ADMIN_URL/ready" >/dev/null || { echo "nexus-fast not ready after 30s:" >&2; cat "$LOG" >&2; exit 1; }
say "nexus-fast is ready ($ADMIN_URL/ready)"

if [ "$PG_LISTEN" != "-" ]; then
    say "PostgreSQL through nexus-fast ($PG_LISTEN -> backend), with psql"
    export PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5
    show psql "host=${PG_LISTEN%:*} port=${PG_LISTEN##*:} user=$PG_USER dbname=$PG_DB sslmode=disable" \
        -X -A -t -c "SELECT version()"
fi
if [ "$REDIS_LISTEN" != "-" ]; then
    say "Redis through nexus-fast ($REDIS_LISTEN -> backend), with redis-cli"
    show redis-cli -h "${REDIS_LISTEN%:*}" -p "${REDIS_LISTEN##*:}" SET nexus:quickstart "hello from nexus-fast"
    show redis-cli -h "${REDIS_LISTEN%:*}" -p "${REDIS_LISTEN##*:}" GET nexus:quickstart
fi

say "health and metrics"
printf '$ curl -s %s/health\n' "$ADMIN_URL"
curl -fsS "$ADMIN_URL/health" | python3 -m json.tool
show python3 -m nexus_fast status -c "$CONFIG" || true  # non-zero would only mean a backend is down
printf '$ curl -s %s/metrics | grep ^nexus_ | head\n' "$ADMIN_URL"
curl -fsS "$ADMIN_URL/metrics" | grep '^nexus_' | head -n 10 || true  # head closing the pipe is not an error

if [ "$CHECK" = 1 ]; then
    say "check done: stopping"
    stop_nexus
    trap - EXIT
    exit 0
fi

say "nexus-fast keeps running (pid $NEXUS_PID); logs follow. Ctrl-C stops it gracefully."
tail -n +1 -f "$LOG" &
TAIL_PID=$!
wait "$NEXUS_PID" || true
kill "$TAIL_PID" 2>/dev/null || true
