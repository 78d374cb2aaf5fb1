-- The agents' work queue: a history of every state change, and a notification per new
-- message so every server instance can push it to the agents' live streams.

CREATE TABLE leave_message_event (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   bigint      NOT NULL REFERENCES leave_message (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    agent        text        NOT NULL,
    action       text        NOT NULL CHECK (action IN ('claim', 'assign', 'release', 'process')),
    from_status  text        NOT NULL CHECK (from_status IN ('pending', 'assigned', 'processed')),
    to_status    text        NOT NULL CHECK (to_status IN ('pending', 'assigned', 'processed')),
    assigned_to  text,
    outcome      text
);
COMMENT ON TABLE leave_message_event IS 'Who changed a message''s status, when, and how: one row per claim, assign, release and process.';
COMMENT ON COLUMN leave_message_event.id IS 'Surrogate key, in the order changes happened.';
COMMENT ON COLUMN leave_message_event.message_id IS 'The message changed; its events go when the message is purged or erased.';
COMMENT ON COLUMN leave_message_event.at IS 'When the change was committed (transaction time).';
COMMENT ON COLUMN leave_message_event.agent IS 'Name of the agent who made the change (kept even if the agent is renamed or removed later).';
COMMENT ON COLUMN leave_message_event.action IS 'claim (took it, or got it from claim-next), assign (an admin gave it to someone), release (back to pending), process (outcome recorded).';
COMMENT ON COLUMN leave_message_event.from_status IS 'Status before the change.';
COMMENT ON COLUMN leave_message_event.to_status IS 'Status after the change.';
COMMENT ON COLUMN leave_message_event.assigned_to IS 'Assignee after the change (NULL when released).';
COMMENT ON COLUMN leave_message_event.outcome IS 'Outcome recorded by a process action.';
CREATE INDEX leave_message_event_message_idx ON leave_message_event (message_id, id);
COMMENT ON INDEX leave_message_event_message_idx IS 'A message''s history in order.';

-- NOTIFY is delivered at commit, so listeners never hear of a message that is not stored.
CREATE FUNCTION leave_message_notify_stored() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('leave_message_stored', NEW.id::text);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION leave_message_notify_stored() IS 'Sends the new message''s id on channel leave_message_stored; every leavemsg instance listens and streams it to agents.';
CREATE TRIGGER leave_message_notify_stored
    AFTER INSERT ON leave_message
    FOR EACH ROW EXECUTE FUNCTION leave_message_notify_stored();
COMMENT ON TRIGGER leave_message_notify_stored ON leave_message IS 'Announces each stored message to the agents'' live streams (LISTEN leave_message_stored).';
