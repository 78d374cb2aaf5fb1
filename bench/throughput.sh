#!/usr/bin/env bash
# Throughput of doLeaveMessage against PostgreSQL's own single-row insert rate, measured in the
# same run on the same machine:
#   - leavemsg (release build, rate limits off, durable commits) driven by wrk with a unique
#     message per request, at 1, 8, 32 and 64 connections;
#   - pgbench running one INSERT per transaction into a table of the same shape, same clients,
#     with its own p99 (from its per-transaction log), and the ceiling: 16 rows per INSERT,
#     8 clients (what the database itself can store for this schema on this machine);
#   - the server logging as in production (RUST_LOG=info, one line per request), to a file;
#   - /healthz at 64 connections: the machine's HTTP ceiling for this binary;
#   - the server's peak RSS, and the stored row count against the acknowledged count.
#
#   bash bench/throughput.sh                  # throwaway PostgreSQL (needs initdb/pg_ctl)
#   DATABASE_URL=postgres://u@host/db bash bench/throughput.sh   # uses leavemsg_bench there
#   DURATION=20 CONNECTIONS="1 64" bash bench/throughput.sh
#   WATCHING=1 bash bench/throughput.sh       # with an agent's live stream open throughout
#   LOG=warn bash bench/throughput.sh         # the server logging warnings only, to compare
#   LOG_FORMAT=json bash bench/throughput.sh  # JSON log lines
#   LOG_AB=1 bash bench/throughput.sh         # also: the same levels against a second server
#                                             # logging warnings only, in alternating halves
#   WEBHOOK=1 bash bench/throughput.sh        # also: intake at 64 connections with and without a
#                                             # webhook endpoint subscribed to every event
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-1 8 32 64}"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q
bench_pg_start
PGBENCH="$PG_BIN/pgbench"
DB_URL="$SERVER_URL/leavemsg_bench"
bench_psql "$SERVER_URL/postgres" -c 'DROP DATABASE IF EXISTS leavemsg_bench' -c 'CREATE DATABASE leavemsg_bench' 2>/dev/null
export DATABASE_URL="$DB_URL"
./target/release/leavemsg migrate >/dev/null
CHANNEL=$(./target/release/leavemsg channel create --name bench | tail -n 1)
bench_psql "$DB_URL" <<'SQL'
SHOW synchronous_commit;
CREATE TABLE bench_leave_message (LIKE leave_message INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                                  INCLUDING INDEXES INCLUDING IDENTITY);
SQL

BENCH_TMP=$(mktemp -d /tmp/leavemsg-bench.XXXXXX)
trap 'rm -rf "$BENCH_TMP"; bench_pg_stop' EXIT
bench_serve 18090
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$BENCH_TMP"; bench_pg_stop' EXIT
if [ -n "${WATCHING:-}" ]; then
    # An agent's console open throughout: the instance listens and streams every message.
    AGENT_KEY=$(DATABASE_URL="$DB_URL" ./target/release/leavemsg agent create --name bench | tail -n 1)
    curl -sN -H "Authorization: Bearer $AGENT_KEY" "http://127.0.0.1:$PORT/api/v1/messages/stream" \
        >/dev/null 2>&1 &
    WATCHER=$!
    trap 'kill $WATCHER $SERVER 2>/dev/null || true; rm -rf "$BENCH_TMP"; bench_pg_stop' EXIT
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$PORT/metrics" | grep -q '^leavemsg_stream_listening 1' && break
        sleep 0.2
    done
    echo "an agent's live stream is open"
fi

wrk_run() { # connections url script [seconds]
    local c=$1 threads=2
    [ "$c" -lt 2 ] && threads=1
    wrk -t"$threads" -c"$c" -d"${4:-$DURATION}s" --timeout 10s -s "$3" "$2"
}
field() { grep -oP "^$1 \K[0-9.]+" <<<"$2" || echo 0; }
# pgbench for a time, with its per-transaction log: prints "tps p99_ms".
pgbench_run() { # clients seconds script
    local jobs=2
    [ "$1" -lt 2 ] && jobs=1
    rm -f "$BENCH_TMP"/pgb.*
    local tps
    tps=$(cd "$BENCH_TMP" && "$PGBENCH" -n -c "$1" -j "$jobs" -T "$2" -l --log-prefix=pgb \
              -f "$OLDPWD/$3" "$DB_URL" 2>/dev/null | grep -oP 'tps = \K[0-9.]+' | head -n 1)
    python3 - "$tps" "$BENCH_TMP"/pgb.* <<'PY'
import sys
latencies = sorted(int(line.split()[2]) for name in sys.argv[2:] for line in open(name))
p99 = latencies[int(len(latencies) * 0.99) - 1] / 1000 if latencies else 0
print(f"{float(sys.argv[1] or 0):.0f} {p99:.3f}")
PY
}

# Warm up both sides briefly.
wrk_run 8 "$BASE/doLeaveMessage" bench/leave-message.lua >/dev/null
"$PGBENCH" -n -c 8 -j 2 -T 2 -f bench/pgbench-insert.sql "$DB_URL" >/dev/null 2>&1

# The ceiling: what the database itself stores for this schema with 16 rows per statement and
# 8 clients. Measured before the levels and again after them.
HALF=$(( (DURATION + 1) / 2 ))
read -r ceiling_tps _ < <(pgbench_run 8 "$HALF" bench/pgbench-insert16.sql)
ceilings=("$((${ceiling_tps%.*} * 16))")

# Each level runs in two halves, alternating leavemsg and pgbench (wrk, pgbench, wrk, pgbench),
# so a drift in the disk's fsync latency during the run weighs on both sides alike.
printf '\n%-5s %12s %9s %9s %8s %12s %13s %8s %10s\n' conns "messages/s" "p50 ms" "p99 ms" non2xx \
    "pgbench tps" "pgbench p99" ratio "p99 ratio"
declare -A ratio_at=() p99_ratio_at=() rps_at=()
for c in $CONNECTIONS; do
    before=$(bench_psql "$DB_URL" -At -c 'SELECT count(*) FROM leave_message')
    requests=0 acked=0 non2xx=0 p50s=() p99s=() tpss=() pg_p99s=() errors=""
    for _half in 1 2; do
        out=$(wrk_run "$c" "$BASE/doLeaveMessage" bench/leave-message.lua "$HALF")
        requests=$((requests + $(grep -oP '\K[0-9]+(?= requests in)' <<<"$out")))
        acked=$((acked + $(field ACK "$out")))
        non2xx=$((non2xx + $(grep -oP 'Non-2xx or 3xx responses: \K[0-9]+' <<<"$out" || echo 0)))
        p50s+=("$(field P50 "$out")")
        p99s+=("$(field P99 "$out")")
        errors+=$(grep -oP 'Socket errors:.*' <<<"$out" || true)
        read -r tps pg_p99 < <(pgbench_run "$c" "$HALF" bench/pgbench-insert.sql)
        tpss+=("$tps")
        pg_p99s+=("$pg_p99")
    done
    after=$(bench_psql "$DB_URL" -At -c 'SELECT count(*) FROM leave_message')
    stored=$((after - before))
    # Messages/s over both halves; p50 the mean of the halves' p50, p99 the worse half's.
    # pgbench's p99 likewise the worse half's.
    read -r rps p50 p99 tps pg_p99 ratio p99_ratio < <(python3 -c "
acked, secs = $acked, 2 * $HALF
p50s, p99s, tpss, pg_p99s = [${p50s[*]/%/,}], [${p99s[*]/%/,}], [${tpss[*]/%/,}], [${pg_p99s[*]/%/,}]
rps, tps = acked / secs, sum(tpss) / len(tpss)
print(f'{rps:.0f} {sum(p50s) / 2:.3f} {max(p99s):.3f} {tps:.0f} {max(pg_p99s):.3f} '
      f'{rps / tps:.2f} {max(p99s) / max(max(pg_p99s), 0.001):.2f}')")
    ratio_at[$c]=$ratio p99_ratio_at[$c]=$p99_ratio rps_at[$c]=$rps
    printf '%-5s %12s %9s %9s %8s %12s %10s ms %7sx %9sx\n' "$c" "$rps" "$p50" "$p99" "$non2xx" \
        "$tps" "$pg_p99" "$ratio" "$p99_ratio"
    # Requests cut off by wrk's end may be stored without being counted as acknowledged.
    if [ "$stored" -lt "$acked" ] || [ "$stored" -gt $((acked + 2 * c)) ]; then
        echo "      ROW COUNT MISMATCH: $acked acknowledged, $stored stored"
    else
        echo "      rows: $acked acknowledged, $stored stored (at most $((2 * c)) answers cut off by the ends of the halves)"
    fi
    [ "$requests" -ne "$acked" ] && echo "      $((requests - acked)) answers were not an acknowledgement"
    [ -n "$errors" ] && echo "      $errors"
done

read -r ceiling_tps _ < <(pgbench_run 8 "$HALF" bench/pgbench-insert16.sql)
ceilings+=("$((${ceiling_tps%.*} * 16))")
ceiling=$(( (ceilings[0] + ceilings[1]) / 2 ))
printf '\nceiling (pgbench, 16 rows per INSERT, 8 clients): %s rows/s (%s before the levels, %s after)\n' \
    "$ceiling" "${ceilings[0]}" "${ceilings[1]}"

out=$(wrk_run 64 "http://127.0.0.1:$PORT/healthz" bench/healthz.lua)
hrps=$(grep -oP 'Requests/sec:\s*\K[0-9.]+' <<<"$out")
printf '\n/healthz at 64 connections: %.0f requests/s (p50 %s ms, p99 %s ms)\n' "$hrps" "$(field P50 "$out")" "$(field P99 "$out")"
peak=$(grep -oP 'VmHWM:\s*\K[0-9]+' "/proc/$SERVER/status")
anon=$(grep -oP 'RssAnon:\s*\K[0-9]+' "/proc/$SERVER/status")
file=$(grep -oP 'RssFile:\s*\K[0-9]+' "/proc/$SERVER/status")
printf 'server peak RSS: %.1f MiB (now: %.1f MiB allocated, %.1f MiB of the binary and libraries)\n' \
    "$(python3 -c "print($peak / 1024)")" "$(python3 -c "print($anon / 1024)")" "$(python3 -c "print($file / 1024)")"
printf 'server log: %s lines, %s MiB\n' "$(wc -l <"$BENCH_TMP/server.log")" \
    "$(python3 -c "print(round($(stat -c %s "$BENCH_TMP/server.log") / 1048576, 1))")"

# The goals (same run, ratios).
goal() { # description measured target met
    printf '  %-58s %14s  %-12s %s\n' "$1" "$2" "$3" "$([ "$4" = 1 ] && echo met || echo 'NOT met')"
}
echo
echo "goals:"
if [ -n "${ratio_at[64]:-}" ]; then
    goal "64 connections vs single-row pgbench" "${ratio_at[64]}x" ">= 3.0x" \
        "$(python3 -c "print(int(${ratio_at[64]} >= 3.0))")"
    share=$(python3 -c "print(f'{${rps_at[64]} / $ceiling:.0%}')")
    goal "64 connections vs the 16-row ceiling" "$share" ">= 50%" \
        "$(python3 -c "print(int(${rps_at[64]} / $ceiling >= 0.5))")"
    goal "64 connections: p99 vs pgbench's own p99" "${p99_ratio_at[64]}x" "<= 2.0x" \
        "$(python3 -c "print(int(${p99_ratio_at[64]} <= 2.0))")"
fi
if [ -n "${ratio_at[1]:-}" ]; then
    goal "1 connection vs single-row pgbench" "${ratio_at[1]}x" ">= 0.8x" \
        "$(python3 -c "print(int(${ratio_at[1]} >= 0.8))")"
fi
goal "server peak RSS" "$(python3 -c "print(f'{$peak / 1024:.1f} MiB')")" "<= 32 MiB" \
    "$(python3 -c "print(int($peak / 1024 <= 32))")"

if [ -n "${WEBHOOK:-}" ]; then
    # Intake at 64 connections with no endpoint, then with one endpoint subscribed to every
    # event and a local receiver answering 204, in alternating halves of the same run. Goal:
    # with the endpoint, at least 80% of the pace without it.
    RECEIVER_PORT=$((PORT + 1))
    while (echo >/dev/tcp/127.0.0.1/$RECEIVER_PORT) 2>/dev/null; do RECEIVER_PORT=$((RECEIVER_PORT + 1)); done
    # The receiver: a bare asyncio protocol (keep-alive, reads the body, answers 204), at the
    # lowest CPU priority: it stands in for a system on another machine, and what it costs on
    # these two cores should take as little as it can from what is measured.
    nice -n 19 python3 - "$RECEIVER_PORT" <<'PY' >/dev/null 2>&1 &
import asyncio, sys
class Hook(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
async def main():
    server = await asyncio.get_running_loop().create_server(Hook, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
PY
    RECEIVER=$!
    trap 'kill $RECEIVER ${WATCHER:-} $SERVER 2>/dev/null || true; rm -rf "$BENCH_TMP"; bench_pg_stop' EXIT
    for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$RECEIVER_PORT) 2>/dev/null && break; sleep 0.1; done
    printf '\n%-28s %12s %9s %9s %8s %12s %12s %12s\n' "64 connections" "messages/s" "p50 ms" "p99 ms" non2xx \
        "server CPU" "database CPU" "receiver CPU"
    declare -A acked_by=() p99_by=()
    for _half in 1 2; do
        for mode in without with; do
            ENDPOINT=""
            if [ "$mode" = with ]; then
                ENDPOINT=$(./target/release/leavemsg webhook add \
                    --url "http://127.0.0.1:$RECEIVER_PORT/hook" | awk 'NR == 1' | grep -oE '[0-9a-f-]{36}')
            fi
            server_cpu=$(cpu_of "$SERVER") receiver_cpu=$(cpu_of "$RECEIVER") database_cpu=$(db_cpu)
            out=$(wrk_run 64 "$BASE/doLeaveMessage" bench/leave-message.lua "$HALF")
            server_cpu=$(python3 -c "print(f'{($(cpu_of "$SERVER") - $server_cpu) / $HALF:.2f}')")
            receiver_cpu=$(python3 -c "print(f'{($(cpu_of "$RECEIVER") - $receiver_cpu) / $HALF:.2f}')")
            database_cpu=$(python3 -c "print(f'{($(db_cpu) - $database_cpu) / $HALF:.2f}')")
            acked_by[$mode]=$(( ${acked_by[$mode]:-0} + $(field ACK "$out") ))
            p99=$(field P99 "$out")
            p99_by[$mode]=$(python3 -c "print(max(${p99_by[$mode]:-0}, $p99))")
            non2xx=$(grep -oP 'Non-2xx or 3xx responses: \K[0-9]+' <<<"$out" || echo 0)
            printf '%-28s %12.0f %9s %9s %8s %10s/s %10s/s %10s/s\n' "$mode endpoint, half $_half" \
                "$(python3 -c "print($(field ACK "$out") / $HALF)")" "$(field P50 "$out")" "$p99" "$non2xx" \
                "$server_cpu" "$database_cpu" "$receiver_cpu"
            if [ -n "$ENDPOINT" ]; then
                # Let the dispatcher catch up before the next half, and count what it sent.
                # Pending: delivery rows, and stored messages past the endpoint's place.
                behind="" caught_up=$(date +%s.%N)
                for _ in $(seq 600); do
                    left=$(bench_psql "$DB_URL" -At -c "
                        SELECT (SELECT count(*) FROM webhook_delivery WHERE status = 'pending')
                             + (SELECT count(*) FROM webhook_cursor k
                                JOIN outbox_stored s ON s.xid >= k.stored_upto
                                CROSS JOIN LATERAL unnest(s.message_ids))")
                    behind=${behind:-$left}
                    [ "$left" = 0 ] && break
                    sleep 0.5
                done
                caught_up=$(python3 -c "print(f'{$(date +%s.%N) - $caught_up:.1f}')")
                sent=$(curl -s "http://127.0.0.1:$PORT/metrics" \
                    | grep -oP '^leavemsg_webhook_deliveries_total\{result="delivered"\} \K[0-9]+' || echo '?')
                echo "      webhooks: $behind still to send when intake stopped, all sent $caught_up s later; $sent delivered so far (pending: $left)"
                ./target/release/leavemsg webhook remove "$ENDPOINT" >/dev/null
            fi
        done
    done
    python3 -c "
without, with_ = ${acked_by[without]} / (2 * $HALF), ${acked_by[with]} / (2 * $HALF)
share = with_ / without
print(f'with an endpoint: {with_:.0f}/s, without: {without:.0f}/s: {share:.0%} of the pace '
      f'(goal >= 80%: {\"met\" if share >= 0.8 else \"NOT met\"}); p99 {${p99_by[with]}} ms vs {${p99_by[without]}} ms')"
fi

if [ -n "${LOG_AB:-}" ]; then
    # What production logging costs, measured against the same binary logging warnings only, in
    # alternating halves of one run (this machine's pace moves by up to 25 % between runs): a
    # second server on the same database at RUST_LOG=warn, driven in turn with the first.
    LOG=warn bench_server_start $((PORT + 2)) "$BENCH_TMP/quiet.log"
    QUIET=$STARTED_PID
    trap 'kill $QUIET ${RECEIVER:-} ${WATCHER:-} $SERVER 2>/dev/null || true; rm -rf "$BENCH_TMP"; bench_pg_stop' EXIT
    QUIET_BASE="http://127.0.0.1:$STARTED_PORT$VISITOR_PATH"
    wrk_run 8 "$QUIET_BASE/doLeaveMessage" bench/leave-message.lua 2 >/dev/null
    printf '\n%-34s %12s %9s %9s %8s %16s\n' "logging A/B" "messages/s" "p50 ms" "p99 ms" non2xx \
        "server CPU/msg"
    declare -A ab_acked=() ab_cpu=() ab_p50=() ab_p99=()
    for c in $CONNECTIONS; do
        for _half in 1 2; do
            for level in "${LOG:-info}" warn; do
                if [ "$level" = warn ]; then pid=$QUIET url=$QUIET_BASE; else pid=$SERVER url=$BASE; fi
                before=$(cpu_of "$pid")
                out=$(wrk_run "$c" "$url/doLeaveMessage" bench/leave-message.lua "$HALF")
                used=$(python3 -c "print($(cpu_of "$pid") - $before)")
                key="$c $level"
                ab_acked[$key]=$(( ${ab_acked[$key]:-0} + $(field ACK "$out") ))
                ab_cpu[$key]=$(python3 -c "print(${ab_cpu[$key]:-0} + $used)")
                ab_p50[$key]="${ab_p50[$key]:-} $(field P50 "$out")"
                ab_p99[$key]=$(python3 -c "print(max(${ab_p99[$key]:-0}, $(field P99 "$out")))")
                printf '%-34s %12.0f %9s %9s %8s %13.0f µs\n' "$c conn, $level, half $_half" \
                    "$(python3 -c "print($(field ACK "$out") / $HALF)")" "$(field P50 "$out")" \
                    "$(field P99 "$out")" \
                    "$(grep -oP 'Non-2xx or 3xx responses: \K[0-9]+' <<<"$out" || echo 0)" \
                    "$(python3 -c "print(1e6 * $used / max($(field ACK "$out"), 1))")"
            done
        done
        python3 - "$c" "${LOG:-info}" "${ab_acked[$c ${LOG:-info}]}" "${ab_acked[$c warn]}" \
            "${ab_cpu[$c ${LOG:-info}]}" "${ab_cpu[$c warn]}" "${ab_p50[$c ${LOG:-info}]}" \
            "${ab_p50[$c warn]}" "${ab_p99[$c ${LOG:-info}]}" "${ab_p99[$c warn]}" <<'PY'
import sys
c, level = sys.argv[1], sys.argv[2]
acked, quiet_acked = int(sys.argv[3]), int(sys.argv[4])
used, quiet_used = float(sys.argv[5]), float(sys.argv[6])
p50, quiet_p50 = (sum(map(float, s.split())) / len(s.split()) for s in sys.argv[7:9])
p99, quiet_p99 = float(sys.argv[9]), float(sys.argv[10])
cpu, quiet_cpu = 1e6 * used / acked, 1e6 * quiet_used / quiet_acked
print(f"  {c} conn: {level} logging at {acked / quiet_acked:.0%} of warn's pace; p50 {p50:.3f} vs "
      f"{quiet_p50:.3f} ms, p99 {p99:.3f} vs {quiet_p99:.3f} ms; server CPU {cpu:.0f} vs "
      f"{quiet_cpu:.0f} µs a message")
PY
    done
fi
