#!/usr/bin/env bash
# How the agents' queue queries scale: loads 1 million, then 10 million messages (99% processed,
# 1% pending) into the real schema and prints EXPLAIN (ANALYZE, BUFFERS) timings of claim-next,
# the pending list's first page and a phone lookup, each the median of several runs, and
# whether any plan used a sequential scan. Goal: each under 5 ms, flat from 1M to 10M.
#
#   bash bench/queue-scale.sh            # throwaway PostgreSQL server (needs initdb/pg_ctl)
#   DATABASE_URL=postgres://u@host/x bash bench/queue-scale.sh   # uses database leavemsg_bench_queue there
#   SIZES="100000 1000000" bash bench/queue-scale.sh               # other sizes
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SIZES="${SIZES:-1000000 10000000}"
RUNS="${RUNS:-7}"

cargo build --release -q
bench_pg_start
DB_URL="$SERVER_URL/leavemsg_bench_queue"
bench_psql "$SERVER_URL/postgres" -c 'DROP DATABASE IF EXISTS leavemsg_bench_queue' -c 'CREATE DATABASE leavemsg_bench_queue'
DATABASE_URL="$DB_URL" ./target/release/leavemsg migrate >/dev/null
bench_psql "$DB_URL" <<'SQL'
INSERT INTO web_channel (id, name) VALUES ('00000000-0000-4000-8000-000000000001', 'bench');
INSERT INTO agent (name, key_id, key_hash) VALUES ('bench', 'benchkey0000', sha256('x'));
SQL

# Loads rows up to TOTAL; ids keep growing, received_at spreads over the last 400 days.
load_to() {
    local from=$1 to=$2
    bench_psql "$DB_URL" <<SQL
SET synchronous_commit = off;
ALTER TABLE leave_message DISABLE TRIGGER leave_message_notify_stored;
INSERT INTO leave_message (channel_id, user_id, user_name, phone_no, phone_digits, message,
                           client_ip, received_at, status, assigned_to, assigned_at,
                           processed_by, processed_at, outcome, submission_key)
SELECT '00000000-0000-4000-8000-000000000001', 'u' || g, 'Visitor', '+1 555 ' || lpad((g % 10000000)::text, 7, '0'),
       '1555' || lpad((g % 10000000)::text, 7, '0'),
       'Please call me back about order ' || g, '192.0.2.1',
       now() - interval '400 days' + (g::float8 / $to) * interval '400 days',
       CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'processed' END,
       CASE WHEN g % 100 = 0 THEN NULL ELSE 'bench' END,
       CASE WHEN g % 100 = 0 THEN NULL ELSE now() END,
       CASE WHEN g % 100 = 0 THEN NULL ELSE 'bench' END,
       CASE WHEN g % 100 = 0 THEN NULL ELSE now() END,
       CASE WHEN g % 100 = 0 THEN NULL ELSE 'called_back' END,
       sha256(('bench' || g)::bytea)
FROM generate_series($from + 1, $to) AS g;
ALTER TABLE leave_message ENABLE TRIGGER leave_message_notify_stored;
VACUUM ANALYZE leave_message;
SQL
}

# Median execution time (ms) of an EXPLAIN ANALYZE over RUNS runs; prints "ms seqscan?".
measure() {
    local sql=$1 times=() plan seq=no
    for _ in $(seq "$RUNS"); do
        plan=$(bench_psql "$DB_URL" -At <<SQL
SET plan_cache_mode = force_custom_plan;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS) $sql;
ROLLBACK;
SQL
)
        grep -q 'Seq Scan' <<<"$plan" && seq=yes
        times+=("$(grep -oP 'Execution Time: \K[0-9.]+' <<<"$plan")")
        printf '%s\n' "$plan" >"$PLAN_FILE"
    done
    printf '%s %s' "$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")" "$seq"
}

# The service's own statements (store/queue.rs), with its parameters filled in.
CLAIM_NEXT="WITH next AS (
    SELECT id FROM leave_message
    WHERE status = 'pending' AND (NULL::uuid IS NULL OR channel_id = NULL::uuid)
    ORDER BY received_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
), changed AS (
    UPDATE leave_message m SET status = 'assigned', assigned_to = 'bench', assigned_at = now()
    FROM next WHERE m.id = next.id RETURNING m.*
), logged AS (
    INSERT INTO leave_message_event (message_id, agent, action, from_status, to_status, assigned_to)
    SELECT id, 'bench', 'claim', 'pending', 'assigned', 'bench' FROM changed
) SELECT id FROM changed"
LIST_WHERE="(\$1::text IS NULL OR status = \$1) AND (\$2::uuid IS NULL OR channel_id = \$2)
    AND (\$3::text IS NULL OR phone_digits = \$3) AND (\$4::text IS NULL OR assigned_to = \$4)
    AND (\$5::timestamptz IS NULL OR received_at >= \$5) AND (\$6::timestamptz IS NULL OR received_at < \$6)
    AND (\$7::timestamptz IS NULL OR (received_at, id) > (\$7, \$8))"
list_sql() { # status phone_digits
    local q="SELECT id, channel_id, user_id, user_name, phone_no, message, host(client_ip), user_agent,
        received_at, status, assigned_to, assigned_at, processed_at, outcome, note
        FROM leave_message WHERE $LIST_WHERE ORDER BY received_at, id LIMIT \$9"
    echo "$q" | sed -e "s/\\\$1/$1/g" -e 's/\$2/NULL/g' -e "s/\\\$3/$2/g" -e 's/\$4/NULL/g' \
        -e 's/\$5/NULL/g' -e 's/\$6/NULL/g' -e 's/\$7/NULL/g' -e 's/\$8/0/g' -e 's/\$9/51/g'
}

PLAN_FILE="$(mktemp)"
printf '\n%-12s %-28s %10s %10s\n' "rows" "query" "median ms" "seq scan"
loaded=0
for size in $SIZES; do
    echo "loading to $size rows ..." >&2
    started=$(date +%s)
    load_to "$loaded" "$size"
    loaded=$size
    echo "loaded in $(( $(date +%s) - started )) s" >&2
    phone="'1555$(printf '%07d' $(( size / 2 % 10000000 )))'"
    for name in claim-next pending-first-page phone-lookup; do
        case $name in
            claim-next) sql=$CLAIM_NEXT ;;
            pending-first-page) sql=$(list_sql "'pending'" NULL) ;;
            phone-lookup) sql=$(list_sql NULL "$phone") ;;
        esac
        read -r ms seq <<<"$(measure "$sql")"
        printf '%-12s %-28s %10s %10s\n' "$size" "$name" "$ms" "$seq"
        if [ "${SHOW_PLANS:-}" = 1 ]; then cat "$PLAN_FILE" >&2; fi
    done
done
bench_psql "$DB_URL" -At -c "SELECT 'table size: ' || pg_size_pretty(pg_total_relation_size('leave_message'))"
