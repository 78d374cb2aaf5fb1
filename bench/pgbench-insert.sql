-- pgbench: one single-row INSERT per transaction into a table of leave_message's shape
-- (same columns, constraints and indexes), the physical reference for doLeaveMessage.
\set n random(1, 2000000000)
INSERT INTO bench_leave_message (channel_id, user_id, user_name, phone_no, phone_digits, message,
                                 client_ip, user_agent, submission_key)
VALUES ('00000000-0000-4000-8000-000000000001', 'visitor', 'Web visitor', '+1 555 0107',
        '15550107', 'benchmark message ' || :client_id || '-' || :n, '127.0.0.1', 'pgbench',
        sha256((:client_id || '-' || :n || '-' || clock_timestamp())::text::bytea));
