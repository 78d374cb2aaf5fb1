-- pgbench: 16 rows per INSERT into the table of leave_message's shape: what the database itself
-- can store for this schema on this machine when commits are shared by 16 rows (the ceiling
-- the batched writer is measured against).
\set n random(1, 2000000000)
INSERT INTO bench_leave_message (channel_id, user_id, user_name, phone_no, phone_digits, message,
                                 client_ip, user_agent, submission_key)
SELECT '00000000-0000-4000-8000-000000000001', 'visitor', 'Web visitor', '+1 555 0107',
       '15550107', 'benchmark message ' || :client_id || '-' || :n || '-' || g, '127.0.0.1',
       'pgbench', sha256((:client_id || '-' || :n || '-' || g || '-' || clock_timestamp())::text::bytea)
FROM generate_series(1, 16) g;
