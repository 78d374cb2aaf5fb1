#!/usr/bin/env bash
# Where doLeaveMessage's time goes, at each connection count, with the server as in production
# (RUST_LOG=info, one line per request, to a file): for each level, in one run,
#   - the server's CPU profile while wrk drives it (perf, by function, in a second pass of the
#     level; skipped without perf);
#   - the server's and the database's CPU seconds per message, on CPU vs the wall clock;
#   - what the database's sessions wait on, sampled every 10 ms (pg_stat_activity);
#   - the statements' own time (pg_stat_statements), leavemsg's and the single-row reference's;
#   - WAL written and flushed, and checkpoints (pg_stat_wal, pg_stat_bgwriter);
#   - the same database figures for pgbench's single-row INSERT at the same client count;
#   - the HTTP hop alone (/healthz at 1 connection), and the 16-row ceiling's figures.
#
#   bash bench/profile.sh                        # 1 and 64 connections, 5 s each
#   CONNECTIONS=64 SECONDS_EACH=10 bash bench/profile.sh
#   LOG=warn bash bench/profile.sh               # to compare with logging at warn
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SECONDS_EACH="${SECONDS_EACH:-5}"
CONNECTIONS="${CONNECTIONS:-1 64}"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
[ -z "${DATABASE_URL:-}" ] || { echo "profile.sh starts its own PostgreSQL; unset DATABASE_URL" >&2; exit 1; }

cargo build --release -q
BENCH_PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c track_io_timing=on -c track_wal_io_timing=on -c log_checkpoints=on"
bench_pg_start
PGBENCH="$PG_BIN/pgbench"
DB_URL="$SERVER_URL/leavemsg_bench"
bench_psql "$SERVER_URL/postgres" -c 'CREATE DATABASE leavemsg_bench'
export DATABASE_URL="$DB_URL"
./target/release/leavemsg migrate >/dev/null
CHANNEL=$(./target/release/leavemsg channel create --name bench | tail -n 1)
bench_psql "$DB_URL" <<'SQL'
CREATE EXTENSION pg_stat_statements;
CREATE TABLE bench_leave_message (LIKE leave_message INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                  INCLUDING INDEXES INCLUDING IDENTITY);
-- Samples of what client sessions wait on, taken by sample_waits() every 10 ms.
CREATE TABLE wait_sample (taken int, waiting text);
CREATE PROCEDURE sample_waits(seconds float8) LANGUAGE plpgsql AS $$
DECLARE
    stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
    n int := 0;
BEGIN
    WHILE clock_timestamp() < stop LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO wait_sample
        SELECT n, coalesce(wait_event_type || ':' || wait_event, 'on CPU')
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid();
        n := n + 1;
        COMMIT;
        PERFORM pg_sleep(0.01);
    END LOOP;
END;
$$;
SQL

BENCH_TMP=$(mktemp -d /tmp/leavemsg-profile.XXXXXX)
trap 'rm -rf "$BENCH_TMP"; bench_pg_stop' EXIT
bench_serve 18190
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$BENCH_TMP"; bench_pg_stop' EXIT
wrk -t2 -c8 -d2s -s bench/leave-message.lua "$BASE/doLeaveMessage" >/dev/null

# Runs a command (its stderr dropped); client_cpu then says the CPU seconds it used.
timed() {
    local TIMEFORMAT='%U %S'
    { time "$@" 2>/dev/null; } 2>"$BENCH_TMP/time"
}
client_cpu() { awk 'END { print $1 + $2 }' "$BENCH_TMP/time"; }
# Jiffies the whole machine spent busy, and all jiffies, since boot.
machine() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
busy_since() { # "busy total" from machine(): cores busy since
    read -r b0 t0 <<<"$1"
    read -r b1 t1 < <(machine)
    python3 -c "print(f'{$(nproc) * ($b1 - $b0) / max($t1 - $t0, 1):.2f}')"
}
reset_stats() {
    bench_psql "$DB_URL" -At -c "SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal'),
        pg_stat_reset_shared('bgwriter')" -c 'TRUNCATE wait_sample' >/dev/null
}
# Database figures since reset_stats, per unit ($1: rows stored, what the figures are divided by).
report_db() {
    bench_psql "$DB_URL" -P pager=off -v rows="$1" <<'SQL'
\echo '  statements (pg_stat_statements, top 6 by total time; µs per call and per row):'
SELECT round(total_exec_time::numeric, 0) AS total_ms, calls, rows,
       round((1000 * total_exec_time / calls)::numeric, 1) AS us_per_call,
       round((1000 * total_exec_time / :rows)::numeric, 1) AS us_per_row,
       regexp_replace(left(query, 60), '\s+', ' ', 'g') AS query
FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE 'CALL sample_waits%'
ORDER BY total_exec_time DESC LIMIT 6;
\echo '  WAL and checkpoints:'
SELECT wal_records / :rows AS records_per_row, wal_bytes / :rows AS bytes_per_row,
       wal_write, wal_sync, round(wal_sync_time::numeric, 0) AS sync_ms,
       round(:rows::numeric / nullif(wal_sync, 0), 1) AS rows_per_sync,
       (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS checkpoints
FROM pg_stat_wal;
\echo '  what the client sessions were doing (samples every 10 ms; share of session-samples):'
SELECT waiting, count(*) AS samples, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
FROM wait_sample GROUP BY waiting ORDER BY count(*) DESC LIMIT 8;
SQL
}

# pgbench for SECONDS_EACH with the database figures beside it: clients, threads, script, rows
# per transaction.
profile_pgbench() {
    reset_stats
    bench_psql "$DB_URL" -c "CALL sample_waits($SECONDS_EACH)" >/dev/null &
    local sampler=$! database_cpu since tps busy rows
    database_cpu=$(db_cpu) since=$(machine)
    tps=$(timed "$PGBENCH" -n -c "$1" -j "$2" -T "$SECONDS_EACH" -f "$3" "$DB_URL" |
        grep -oP 'tps = \K[0-9.]+' | head -n 1)
    busy=$(busy_since "$since")
    sleep 1  # pgbench's sessions ended: their CPU counts once the postmaster has collected them
    database_cpu=$(python3 -c "print($(db_cpu) - $database_cpu)")
    wait "$sampler" || true
    rows=$(python3 -c "print(round($tps * $4 * $SECONDS_EACH))")
    python3 -c "print(f'  {$tps * $4:.0f} rows/s; CPU per row: database {1e6 * $database_cpu / max($rows, 1):.0f} µs, pgbench {1e6 * $(client_cpu) / max($rows, 1):.0f} µs (cores busy: database {$database_cpu / $SECONDS_EACH:.2f}; the whole machine {$busy})')"
    report_db "$rows"
}

for c in $CONNECTIONS; do
    threads=2
    [ "$c" -lt 2 ] && threads=1
    echo
    echo "=== $c connection(s), leavemsg, ${SECONDS_EACH} s ==="
    reset_stats
    before=$(bench_psql "$DB_URL" -At -c 'SELECT count(*) FROM leave_message')
    bench_psql "$DB_URL" -c "CALL sample_waits($SECONDS_EACH)" >/dev/null &
    SAMPLER=$!
    server_cpu=$(cpu_of "$SERVER") database_cpu=$(db_cpu) since=$(machine)
    out=$(timed wrk -t"$threads" -c"$c" -d"${SECONDS_EACH}s" --timeout 10s -s bench/leave-message.lua "$BASE/doLeaveMessage")
    busy=$(busy_since "$since")
    server_cpu=$(python3 -c "print($(cpu_of "$SERVER") - $server_cpu)")
    database_cpu=$(python3 -c "print($(db_cpu) - $database_cpu)")
    wait "$SAMPLER" || true
    stored=$(( $(bench_psql "$DB_URL" -At -c 'SELECT count(*) FROM leave_message') - before ))
    python3 - "$stored" "$SECONDS_EACH" "$server_cpu" "$database_cpu" "$c" "$(client_cpu)" "$busy" <<'PY'
import sys
rows, secs, server, db, c = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
wrk, busy = float(sys.argv[6]), sys.argv[7]
per = lambda x: f"{1e6 * x / max(rows, 1):.0f} µs"
print(f"  {rows / secs:.0f} messages/s; {1e6 * secs * c / max(rows, 1):.0f} µs per message per connection (wall)")
print(f"  CPU per message: server {per(server)}, database {per(db)}, wrk {per(wrk)} "
      f"(cores busy: server {server / secs:.2f}, database {db / secs:.2f}, wrk {wrk / secs:.2f}; "
      f"the whole machine {busy})")
PY
    grep -E '^(P50|P99) ' <<<"$out" | tr '\n' ' ' | sed 's/^/  latency ms: /'; echo
    report_db "$stored"
    if command -v perf >/dev/null; then
        # A second pass under perf (which slows the server): where the server's CPU goes.
        perf record -q -F 999 -p "$SERVER" -o "$BENCH_TMP/perf.data" -- sleep "$SECONDS_EACH" \
            >/dev/null 2>&1 &
        PERF=$!
        wrk -t"$threads" -c"$c" -d"${SECONDS_EACH}s" --timeout 10s -s bench/leave-message.lua \
            "$BASE/doLeaveMessage" >/dev/null
        wait "$PERF" || true
    fi
    if [ -s "$BENCH_TMP/perf.data" ]; then
        echo '  server CPU by function (perf, self time, top 25; a second pass):'
        perf report -i "$BENCH_TMP/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
            awk '/^ +[0-9]/ && n++ < 25 { sub(/[ -]+$/, ""); print "  " $0 }'
    fi

    echo
    echo "=== $c client(s), pgbench single-row INSERT, ${SECONDS_EACH} s ==="
    profile_pgbench "$c" "$threads" bench/pgbench-insert.sql 1
done

echo
echo "=== the HTTP hop alone: /healthz at 1 connection, ${SECONDS_EACH} s ==="
out=$(wrk -t1 -c1 -d"${SECONDS_EACH}s" -s bench/healthz.lua "http://127.0.0.1:$PORT/healthz")
python3 -c "print(f'  {1e6 / $(grep -oP 'Requests/sec:\s*\K[0-9.]+' <<<"$out"):.0f} µs a request (wrk to leavemsg and back, nothing else)')"

echo
echo "=== the ceiling: pgbench, 16 rows per INSERT, 8 clients, ${SECONDS_EACH} s ==="
profile_pgbench 8 2 bench/pgbench-insert16.sql 16
