-- Call attempts, retries, scheduled callbacks and service levels (CONTRACT §3.1): per channel
-- how many attempts a message gets, how long after an unsuccessful one it is due again, and the
-- service level; per message when it is due, how many attempts it has had, and when the
-- visitor asked to be called at the earliest. Every attempt is a row of the message's history.
--
-- No table rewrite: existing rows keep due_at NULL, and only the messages not yet processed are
-- given one (a processed message is read with due_at = received_at). The lock this migration
-- holds lasts as long as that update of the open messages, not of the whole table.

ALTER TABLE web_channel
    ADD COLUMN max_attempts  smallint NOT NULL DEFAULT 3
        CONSTRAINT web_channel_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 10),
    ADD COLUMN retry_minutes integer  NOT NULL DEFAULT 60
        CONSTRAINT web_channel_retry_minutes_check CHECK (retry_minutes BETWEEN 1 AND 10080),
    ADD COLUMN sla_minutes   integer  NOT NULL DEFAULT 240
        CONSTRAINT web_channel_sla_minutes_check CHECK (sla_minutes BETWEEN 1 AND 43200);
COMMENT ON COLUMN web_channel.max_attempts IS 'Call attempts a message of this channel gets (1-10): the last unsuccessful one closes it with outcome no_answer.';
COMMENT ON COLUMN web_channel.retry_minutes IS 'After an unsuccessful attempt (no_answer, busy, voicemail), the message is due again this many minutes later (1-10080).';
COMMENT ON COLUMN web_channel.sla_minutes IS 'Service level: a message not processed this many minutes after it became due is overdue (1-43200).';

-- due_at's default (set after the column is added, so existing rows are not rewritten) serves
-- rows written by an instance that predates this migration (during a rolling upgrade): such a
-- row is due when stored. Current instances write it themselves.
ALTER TABLE leave_message
    ADD COLUMN callback_after timestamptz,
    ADD COLUMN due_at         timestamptz,
    ADD COLUMN attempts       smallint    NOT NULL DEFAULT 0
        CONSTRAINT leave_message_attempts_check CHECK (attempts BETWEEN 0 AND 10);
ALTER TABLE leave_message ALTER COLUMN due_at SET DEFAULT now();
UPDATE leave_message SET due_at = received_at WHERE status <> 'processed';
-- NOT VALID: checked for every row written from now on; the rows above were just set.
ALTER TABLE leave_message ADD CONSTRAINT leave_message_due_at_check
    CHECK (due_at IS NOT NULL OR status = 'processed') NOT VALID;
COMMENT ON CONSTRAINT leave_message_due_at_check ON leave_message IS 'A message not yet processed has a due time (processed messages stored before due times existed have none).';
COMMENT ON COLUMN leave_message.callback_after IS 'The earliest time the visitor asked to be called (callbackAfter), NULL for as soon as possible.';
COMMENT ON COLUMN leave_message.due_at IS 'When the message should next be called: received_at, or callback_after when later (NULL only for messages processed before due times existed: read it as received_at); after an unsuccessful attempt, that attempt''s time + the channel''s retry_minutes. Overdue once due_at + the channel''s sla_minutes has passed while it is not processed.';
COMMENT ON COLUMN leave_message.attempts IS 'Call attempts recorded so far (leave_message_event rows with action attempt).';

-- claim-next: the pending message with the earliest due_at that is due (ties: received_at, id).
CREATE INDEX leave_message_due_idx ON leave_message (due_at, received_at, id) WHERE status = 'pending';
COMMENT ON INDEX leave_message_due_idx IS 'Pending queue by when messages are due: claim-next and the due list read its head.';
CREATE INDEX leave_message_due_channel_idx ON leave_message (channel_id, due_at, received_at, id) WHERE status = 'pending';
COMMENT ON INDEX leave_message_due_channel_idx IS 'Pending queue of one channel by when messages are due (claim-next?channelId=, queue counts per channel).';
-- Overdue is about every message not yet processed, assigned ones included.
CREATE INDEX leave_message_open_due_idx ON leave_message (channel_id, due_at) WHERE status <> 'processed';
COMMENT ON INDEX leave_message_open_due_idx IS 'Messages not yet processed, per channel by due time: the overdue count and filter.';

ALTER TABLE leave_message_event
    DROP CONSTRAINT leave_message_event_action_check,
    ADD CONSTRAINT leave_message_event_action_check
        CHECK (action IN ('claim', 'assign', 'release', 'process', 'attempt')),
    ADD COLUMN result text
        CONSTRAINT leave_message_event_result_check
        CHECK (result IN ('reached', 'no_answer', 'busy', 'voicemail', 'wrong_number', 'spam')),
    ADD COLUMN note text
        CONSTRAINT leave_message_event_note_check CHECK (length(note) <= 2000),
    ADD CONSTRAINT leave_message_event_attempt_check CHECK ((action = 'attempt') = (result IS NOT NULL));
COMMENT ON COLUMN leave_message_event.action IS 'claim (took it, or got it from claim-next), assign (an admin gave it to someone), release (back to pending), process (outcome recorded), attempt (a call attempt''s result recorded; it may also have released or processed the message: see to_status).';
COMMENT ON COLUMN leave_message_event.result IS 'For an attempt: reached, no_answer, busy, voicemail, wrong_number or spam. NULL for other actions.';
COMMENT ON COLUMN leave_message_event.note IS 'The agent''s note on an attempt or a process action, as given then (the message keeps only the last in leave_message.note).';
COMMENT ON CONSTRAINT leave_message_event_attempt_check ON leave_message_event IS 'An attempt has a result, and only an attempt has one.';
