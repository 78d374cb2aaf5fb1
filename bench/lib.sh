# Shared by the benchmark scripts: a throwaway PostgreSQL server unless DATABASE_URL is given.
# Usage: source bench/lib.sh; bench_pg_start NAME; ... ; (stopped on exit)

bench_pg_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bench_as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Sets SERVER_URL (no database part) and PG_BIN; starts a server when DATABASE_URL is unset,
# with BENCH_PG_OPTIONS added to its command line (for example "-c track_io_timing=on").
bench_pg_start() {
    PG_BIN="$(bench_pg_bin)"
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        echo "PostgreSQL server programs are needed (apt-get install postgresql)" >&2
        exit 1
    fi
    if [ -n "${DATABASE_URL:-}" ]; then
        SERVER_URL="${DATABASE_URL%/*}"
        echo "using the PostgreSQL server of DATABASE_URL"
        return
    fi
    BENCH_PG_DIR="$(mktemp -d /tmp/leavemsg-bench-pg.XXXXXX)"
    chmod 755 "$BENCH_PG_DIR"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$BENCH_PG_DIR"; fi
    BENCH_PG_PORT=56432
    while (echo >/dev/tcp/127.0.0.1/$BENCH_PG_PORT) 2>/dev/null; do BENCH_PG_PORT=$((BENCH_PG_PORT + 1)); done
    bench_as_pg "$PG_BIN/initdb" -D "$BENCH_PG_DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    # Durable settings as shipped (fsync and synchronous_commit on); a bit more memory for
    # loading and a checkpoint spacing suited to bulk loads.
    bench_as_pg "$PG_BIN/pg_ctl" -D "$BENCH_PG_DIR/data" -l "$BENCH_PG_DIR/log" -w \
        -o "-p $BENCH_PG_PORT -k $BENCH_PG_DIR -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c max_wal_size=8GB -c max_connections=200 ${BENCH_PG_OPTIONS:-}" \
        start >/dev/null
    trap bench_pg_stop EXIT
    SERVER_URL="postgres://postgres@127.0.0.1:$BENCH_PG_PORT"
    echo "started a throwaway PostgreSQL on port $BENCH_PG_PORT"
}

bench_pg_stop() {
    if [ -n "${BENCH_PG_DIR:-}" ]; then
        bench_as_pg "$PG_BIN/pg_ctl" -D "$BENCH_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$BENCH_PG_DIR"
    fi
}

bench_psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

# The visitor interface's path on a server.
VISITOR_PATH=/service-cloud/rest/webadapter/v1/webadapterfacade

# Starts `leavemsg serve` (release build, rate limits off) against DATABASE_URL on the first
# free port from $1, logging to $2 as in production (RUST_LOG=info unless LOG says otherwise;
# LOG_FORMAT=json for JSON), as a service manager's journal would take the lines; waits until
# it is ready. Sets STARTED_PORT and STARTED_PID. The caller stops it.
bench_server_start() { # first-port log-file
    STARTED_PORT=$1
    while (echo >/dev/tcp/127.0.0.1/$STARTED_PORT) 2>/dev/null; do STARTED_PORT=$((STARTED_PORT + 1)); done
    LEAVEMSG_LISTEN=127.0.0.1:$STARTED_PORT LEAVEMSG_RATE_PER_TOKEN=0 LEAVEMSG_RATE_PER_IP=0 \
        RUST_LOG="${LOG:-info}" LEAVEMSG_LOG_FORMAT="${LOG_FORMAT:-text}" \
        ./target/release/leavemsg serve >"$2" 2>&1 &
    STARTED_PID=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$STARTED_PORT/readyz" >/dev/null && break; sleep 0.2; done
}

# The server a run measures: started as above, logging to $BENCH_TMP/server.log, with a
# visitor token on CHANNEL. Sets PORT, SERVER (its pid), BASE (the visitor interface) and
# exports LEAVEMSG_TOKEN.
bench_serve() { # first-port
    bench_server_start "$1" "$BENCH_TMP/server.log"
    PORT=$STARTED_PORT SERVER=$STARTED_PID
    echo "server logging: ${LOG:-info} (${LOG_FORMAT:-text})"
    BASE="http://127.0.0.1:$PORT$VISITOR_PATH"
    LEAVEMSG_TOKEN=$(curl -sf "$BASE/applyToken" -H 'Content-Type: application/json' \
        -d "{\"userId\":\"bench\",\"userName\":\"bench\",\"channelId\":\"$CHANNEL\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
    export LEAVEMSG_TOKEN
}

# CPU seconds a process has used so far (user + system).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# PostgreSQL's CPU seconds so far: the postmaster with its ended children, and the running ones
# (a throwaway server only; 0 otherwise).
db_cpu() {
    local pm
    pm=$(head -n 1 "${BENCH_PG_DIR:-/nonexistent}/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
      for child in $(pgrep -P "$pm"); do awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null; done
    } | awk -v hz="$(getconf CLK_TCK)" '{ t += $1 } END { printf "%.3f", t / hz }'
}
