#!/usr/bin/env bash
# How the agents' queue queries scale. For each size (1 million, then 10 million messages) it
# builds a fresh database with the schema as it was before the call-attempts migration, loads
# the messages (99% processed over 400 days, the newest 1% open, over 4 channels), applies the
# call-attempts migration and the ones after it (timed: the migration rewrites every row), gives
# the open messages due times and attempts (some due later, some retried), writes one attempt
# history row per processed message, and prints EXPLAIN (ANALYZE, BUFFERS) timings of the
# service's own statements and the DBA's reports in docs/dba.md, each the median of several
# runs, and whether any plan used a sequential scan. Goal for the service's statements: each
# under 5 ms, flat from 1M to 10M (the queue counts read every open message: see docs/dba.md).
#
#   bash bench/queue-scale.sh            # throwaway PostgreSQL server (needs initdb/pg_ctl)
#   DATABASE_URL=postgres://u@host/x bash bench/queue-scale.sh   # uses database leavemsg_bench_queue there
#   SIZES="100000 1000000" bash bench/queue-scale.sh               # other sizes
#   SHOW_PLANS=1 ...                                               # print each plan too
#
# Needs psql and about 20 GB of free disk at 10 million rows (the migration's rewrite doubles
# the table until vacuum reuses the space, and its WAL is written too).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

SIZES="${SIZES:-1000000 10000000}"
RUNS="${RUNS:-7}"
# Applied after loading, and timed: the migration that rewrites every row of leave_message.
TIMED_MIGRATION=20261130000002

bench_pg_start
DB_URL="$SERVER_URL/leavemsg_bench_queue"
CHANNELS="'00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002',
          '00000000-0000-4000-8000-000000000003', '00000000-0000-4000-8000-000000000004'"

# Applies the migrations whose version is below (mode "before") or at/above (mode "from")
# TIMED_MIGRATION, each in one transaction as `leavemsg migrate` does; prints each statement's
# time when timed.
apply_migrations() {
    local mode=$1 file version
    for file in migrations/*.sql; do
        version=$(basename "$file" | cut -d_ -f1)
        if { [ "$mode" = before ] && [ "$version" -lt "$TIMED_MIGRATION" ]; } ||
            { [ "$mode" = from ] && [ "$version" -ge "$TIMED_MIGRATION" ]; }; then
            if [ "$mode" = from ]; then
                "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -1 "$DB_URL" -c '\timing on' -f "$file" |
                    awk -v file="$(basename "$file")" '
                        /^Time:/ { if (tag != "") printf "  %s: %s %s ms\n", file, tag, $2; tag = ""; next }
                        /^(UPDATE|ALTER TABLE|CREATE INDEX)/ { tag = $0; next }
                        { tag = "" }' >&2
            else
                bench_psql -1 "$DB_URL" -f "$file" >/dev/null
            fi
        fi
    done
}

# Loads `size` messages in the schema before TIMED_MIGRATION: received_at spread over the last
# 400 days, ids in that order, the newest 1% pending (every 20th of them assigned).
load() {
    local size=$1
    bench_psql "$DB_URL" <<SQL
SET synchronous_commit = off;
INSERT INTO web_channel (id, name)
SELECT id::uuid, 'bench ' || n FROM unnest(ARRAY[$CHANNELS]) WITH ORDINALITY AS c(id, n);
INSERT INTO agent (name, key_id, key_hash)
SELECT 'bench' || n, 'benchkey' || lpad(n::text, 4, '0'), sha256(n::text::bytea)
FROM generate_series(0, 19) n;
ALTER TABLE leave_message DISABLE TRIGGER leave_message_notify_stored;
INSERT INTO leave_message (channel_id, user_id, user_name, phone_no, phone_digits, message,
                           client_ip, received_at, status, assigned_to, assigned_at,
                           processed_by, processed_at, outcome, submission_key)
SELECT (ARRAY[$CHANNELS])[1 + g % 4]::uuid, 'u' || g, 'Visitor',
       '+1 555 ' || lpad((g % 10000000)::text, 7, '0'), '1555' || lpad((g % 10000000)::text, 7, '0'),
       'Please call me back about order ' || g, '192.0.2.1',
       now() - interval '400 days' + (g::float8 / $size) * interval '400 days',
       s.status,
       CASE s.status WHEN 'pending' THEN NULL ELSE 'bench' || g % 20 END,
       CASE s.status WHEN 'pending' THEN NULL ELSE now() END,
       CASE s.status WHEN 'processed' THEN 'bench' || g % 20 END,
       CASE s.status WHEN 'processed' THEN now() END,
       CASE s.status WHEN 'processed' THEN 'called_back' END,
       sha256(('bench' || g)::bytea)
FROM generate_series(1, $size) AS g,
     LATERAL (SELECT CASE WHEN g <= $size * 0.99 THEN 'processed'
                          WHEN g % 20 = 0 THEN 'assigned'
                          ELSE 'pending' END AS status) s;
ALTER TABLE leave_message ENABLE TRIGGER leave_message_notify_stored;
VACUUM ANALYZE leave_message;
SQL
}

# After the migration: channels with different service levels; open messages with due times
# (a fifth due within the next week: callbacks asked for later, or retries), attempts; one
# attempt history row per processed message, by 20 agents, the hour after it was received.
shape() {
    bench_psql "$DB_URL" <<SQL
SET synchronous_commit = off;
UPDATE web_channel SET sla_minutes = (ARRAY[240, 60, 1440, 4320])[right(id::text, 1)::int];
UPDATE leave_message
SET due_at = CASE WHEN id % 5 = 0 THEN now() + (id % 10080) * interval '1 minute' ELSE due_at END,
    attempts = CASE WHEN id % 5 IN (0, 1) THEN 1 ELSE 0 END
WHERE status <> 'processed';
INSERT INTO leave_message_event (message_id, at, agent, action, from_status, to_status,
                                 assigned_to, outcome, result)
SELECT id, received_at + (id % 60) * interval '1 minute', processed_by, 'attempt',
       'assigned', 'processed', processed_by, 'called_back', 'reached'
FROM leave_message WHERE status = 'processed' ORDER BY id;
VACUUM ANALYZE leave_message, leave_message_event, web_channel;
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
        grep -q 'Seq Scan on leave_message\b' <<<"$plan" && seq=yes
        grep -q 'Seq Scan on leave_message_event' <<<"$plan" && seq=events
        times+=("$(grep -oP 'Execution Time: \K[0-9.]+' <<<"$plan")")
        printf '%s\n' "$plan" >"$PLAN_FILE"
    done
    printf '%s %s' "$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")" "$seq"
}

# The service's own statements (store/queue.rs, store/listing.rs, store/row.rs), with their
# parameters filled in.
COLUMNS="m.id, m.channel_id, m.user_id, m.user_name, m.phone_no, m.message, host(m.client_ip),
    m.user_agent, m.received_at, m.status, m.assigned_to, m.assigned_at, m.processed_at,
    m.outcome, m.note, m.callback_after, m.due_at,
    m.due_at + make_interval(mins => c.sla_minutes),
    (m.status <> 'processed' AND m.due_at <= now() - make_interval(mins => c.sla_minutes)),
    m.attempts, c.max_attempts"
claim_next_sql() { # channel
    echo "WITH assignee AS (
    SELECT name FROM agent WHERE name = 'bench0' AND enabled FOR SHARE
), next AS (
    SELECT id FROM leave_message
    WHERE status = 'pending' AND due_at <= now() AND ($1::uuid IS NULL OR channel_id = $1::uuid)
      AND EXISTS (SELECT FROM assignee)
    ORDER BY due_at, received_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
), changed AS (
    UPDATE leave_message m SET status = 'assigned', assigned_to = 'bench0', assigned_at = now()
    FROM next WHERE m.id = next.id RETURNING m.*
), logged AS (
    INSERT INTO leave_message_event (message_id, agent, action, from_status, to_status, assigned_to)
    SELECT id, 'bench0', 'claim', 'pending', 'assigned', 'bench0' FROM changed
) SELECT $COLUMNS FROM changed m JOIN web_channel c ON c.id = m.channel_id"
}
list_sql() { # status channel phone_digits due overdue
    echo "SELECT $COLUMNS
    FROM leave_message m JOIN web_channel c ON c.id = m.channel_id
    WHERE ($1::text IS NULL OR m.status = $1) AND ($2::uuid IS NULL OR m.channel_id = $2)
      AND ($3::text IS NULL OR m.phone_digits = $3) AND (NULL::text IS NULL OR m.assigned_to = NULL)
      AND (NULL::timestamptz IS NULL OR m.received_at >= NULL)
      AND (NULL::timestamptz IS NULL OR m.received_at < NULL)
      AND ($4::boolean IS NOT TRUE OR (m.status = 'pending' AND coalesce(m.due_at, m.received_at) <= now()))
      AND ($4::boolean IS NOT FALSE OR m.status <> 'pending' OR m.due_at > now())
      AND ($5::boolean IS NOT TRUE
           OR (m.status <> 'processed' AND m.due_at <= now() - make_interval(mins => c.sla_minutes)))
      AND ($5::boolean IS NOT FALSE OR m.status = 'processed'
           OR m.due_at > now() - make_interval(mins => c.sla_minutes))
      AND (NULL::timestamptz IS NULL OR (m.received_at, m.id) > (NULL, 0))
    ORDER BY m.received_at, m.id LIMIT 51"
}
queue_sql() { # channel
    echo "SELECT
    (SELECT count(*) FROM leave_message
     WHERE status = 'pending' AND ($1::uuid IS NULL OR channel_id = $1::uuid)),
    (SELECT count(*) FROM leave_message
     WHERE status = 'pending' AND due_at <= now() AND ($1::uuid IS NULL OR channel_id = $1::uuid)),
    (SELECT count(*) FROM web_channel c JOIN leave_message m ON m.channel_id = c.id
     WHERE m.status <> 'processed' AND m.due_at <= now() - make_interval(mins => c.sla_minutes)
       AND ($1::uuid IS NULL OR c.id = $1::uuid)),
    (SELECT count(*) FROM leave_message
     WHERE status = 'assigned' AND ($1::uuid IS NULL OR channel_id = $1::uuid)),
    (SELECT count(*) FROM leave_message
     WHERE status = 'assigned' AND assigned_to = 'bench0' AND ($1::uuid IS NULL OR channel_id = $1::uuid)),
    coalesce(floor(extract(epoch FROM now() - (
        SELECT min(due_at) FROM leave_message
        WHERE status = 'pending' AND due_at <= now()
          AND ($1::uuid IS NULL OR channel_id = $1::uuid))))::bigint, 0)"
}
# The DBA's reports (docs/dba.md).
OVERDUE_NOW="SELECT c.name, count(*) AS overdue,
       max(now() - (m.due_at + make_interval(mins => c.sla_minutes))) AS most_late
FROM web_channel c JOIN leave_message m ON m.channel_id = c.id
WHERE m.status <> 'processed' AND m.due_at <= now() - make_interval(mins => c.sla_minutes)
GROUP BY c.name ORDER BY c.name"
ATTEMPTS_PER_AGENT_DAY="SELECT agent, date_trunc('day', at AT TIME ZONE 'UTC') AS day, count(*) AS attempts,
       count(*) FILTER (WHERE result = 'reached') AS reached
FROM leave_message_event
WHERE action = 'attempt' AND at >= now() - interval '7 days'
GROUP BY agent, day ORDER BY day DESC, agent"
FIRST_ATTEMPT_SLA="SELECT c.name, date_trunc('day', m.received_at AT TIME ZONE 'UTC') AS day,
       count(*) AS messages, count(f.at) AS called,
       count(*) FILTER (WHERE f.at <= greatest(m.received_at, m.callback_after)
                                      + make_interval(mins => c.sla_minutes)) AS called_within_sla,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY f.at - greatest(m.received_at, m.callback_after))
           AS median_wait
FROM leave_message m
JOIN web_channel c ON c.id = m.channel_id
LEFT JOIN LATERAL (SELECT e.at FROM leave_message_event e
                   WHERE e.message_id = m.id AND e.action IN ('attempt', 'process')
                   ORDER BY e.id LIMIT 1) f ON true
WHERE m.received_at >= now() - interval '7 days' AND m.received_at < now() - interval '1 day'
GROUP BY c.name, day ORDER BY day DESC, c.name"

ONE="'00000000-0000-4000-8000-000000000002'"
PLAN_FILE="$(mktemp)"
printf '\n%-10s %-28s %10s %10s\n' "rows" "query" "median ms" "seq scan"
for size in $SIZES; do
    bench_psql "$SERVER_URL/postgres" -c 'DROP DATABASE IF EXISTS leavemsg_bench_queue' \
        -c 'CREATE DATABASE leavemsg_bench_queue'
    apply_migrations before
    echo "loading $size rows ..." >&2
    started=$(date +%s)
    load "$size"
    echo "loaded in $(( $(date +%s) - started )) s; migrating (statement times):" >&2
    started=$(date +%s)
    apply_migrations from
    echo "migrated in $(( $(date +%s) - started )) s" >&2
    shape
    phone="'1555$(printf '%07d' $(( size / 2 % 10000000 )))'"
    for name in claim-next claim-next-channel due-first-page later-first-page overdue-first-page \
        pending-first-page assigned-first-page phone-lookup queue-counts queue-counts-channel \
        dba-overdue-now dba-attempts-per-agent-day dba-first-attempt-sla; do
        case $name in
            claim-next) sql=$(claim_next_sql NULL) ;;
            claim-next-channel) sql=$(claim_next_sql "$ONE") ;;
            due-first-page) sql=$(list_sql "'pending'" NULL NULL true NULL) ;;
            later-first-page) sql=$(list_sql "'pending'" NULL NULL false NULL) ;;
            overdue-first-page) sql=$(list_sql NULL NULL NULL NULL true) ;;
            pending-first-page) sql=$(list_sql "'pending'" NULL NULL NULL NULL) ;;
            assigned-first-page) sql=$(list_sql "'assigned'" NULL NULL NULL NULL) ;;
            phone-lookup) sql=$(list_sql NULL NULL "$phone" NULL NULL) ;;
            queue-counts) sql=$(queue_sql NULL) ;;
            queue-counts-channel) sql=$(queue_sql "$ONE") ;;
            dba-overdue-now) sql=$OVERDUE_NOW ;;
            dba-attempts-per-agent-day) sql=$ATTEMPTS_PER_AGENT_DAY ;;
            dba-first-attempt-sla) sql=$FIRST_ATTEMPT_SLA ;;
        esac
        read -r ms seq <<<"$(measure "$sql")"
        printf '%-10s %-28s %10s %10s\n' "$size" "$name" "$ms" "$seq"
        if [ "${SHOW_PLANS:-}" = 1 ]; then cat "$PLAN_FILE" >&2; fi
    done
    bench_psql "$DB_URL" -At -c "SELECT 'sizes: leave_message ' || pg_size_pretty(pg_total_relation_size('leave_message'))
        || ', leave_message_event ' || pg_size_pretty(pg_total_relation_size('leave_message_event'))
        || ', open messages ' || (SELECT count(*) FROM leave_message WHERE status <> 'processed')"
done
