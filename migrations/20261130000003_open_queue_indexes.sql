-- Indexes for the call-attempt queue's lists and counts, measured at 10 million rows
-- (docs/dba.md, bench/queue-scale.sh).
--
-- The overdue list (`?overdue=true`) and the assigned list read the messages not yet processed
-- in list order. Without an index of just those, PostgreSQL walks leave_message_received_idx
-- from the oldest message and skips every processed one: the open messages are the newest, so
-- at 1 million rows a first page took 560 ms, and at 10 million it would pass the statement
-- timeout. leave_message_open_idx holds only the open messages, so it stays small.
CREATE INDEX leave_message_open_idx ON leave_message (received_at, id) WHERE status <> 'processed';
COMMENT ON INDEX leave_message_open_idx IS 'Messages not yet processed (pending and assigned), in list order: the pending, assigned and overdue lists.';

-- The pending list reads leave_message_open_idx now (pending messages are open ones, and few
-- open ones are assigned at any time), and claim-next reads leave_message_due_idx: the old
-- pending index serves nothing. Dropping it keeps the number of indexes every new message
-- enters as it was.
DROP INDEX leave_message_pending_idx;

-- Who holds what: GET /api/v1/queue counts the assigned messages and the caller's from it
-- alone (an index-only scan). No new message enters it: messages are stored pending.
CREATE INDEX leave_message_assigned_now_idx ON leave_message (assigned_to, channel_id) WHERE status = 'assigned';
COMMENT ON INDEX leave_message_assigned_now_idx IS 'Messages assigned now, by agent and channel: the assigned and mine counts of the queue.';

-- Reports over a period of the history (attempts per agent per day, docs/dba.md) read only that
-- period's rows. Rows are appended in time order, so a BRIN index (a few kilobytes per
-- gigabyte) finds them; the history's writes (agents' actions, not the intake) barely notice it.
CREATE INDEX leave_message_event_at_idx ON leave_message_event USING brin (at);
COMMENT ON INDEX leave_message_event_at_idx IS 'History rows by time (BRIN: rows are appended in time order): reports over a period.';
