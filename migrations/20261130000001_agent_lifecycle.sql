-- Agents can leave: an agent is disabled rather than deleted (its name stays on the messages it
-- handled and in their history), its key can be replaced, and when it was last seen is kept.
-- A disabled agent's assigned messages go back to pending, each with a history row that says
-- why.

ALTER TABLE agent
    ADD COLUMN enabled      boolean     NOT NULL DEFAULT true,
    ADD COLUMN disabled_at  timestamptz,
    ADD COLUMN last_seen_at timestamptz,
    ADD CONSTRAINT agent_disabled_at_check CHECK (enabled = (disabled_at IS NULL));
COMMENT ON COLUMN agent.enabled IS 'false once disabled (leavemsg agent disable): its key is refused; leavemsg agent enable gives it a new key.';
COMMENT ON COLUMN agent.disabled_at IS 'When the agent was disabled; NULL while enabled.';
COMMENT ON COLUMN agent.last_seen_at IS 'When the agent''s key was last accepted, to within about a minute (written at most once a minute); NULL if never.';
COMMENT ON CONSTRAINT agent_disabled_at_check ON agent IS 'A disabled agent has the time it was disabled, an enabled one none.';

ALTER TABLE leave_message_event
    ADD COLUMN reason text,
    ADD CONSTRAINT leave_message_event_reason_check
        CHECK (reason IS NULL OR (reason = 'agent_disabled' AND action = 'release'));
COMMENT ON TABLE leave_message_event IS 'Who changed a message''s status, when, and how: one row per claim, assign, release and process, and per release caused by disabling its assignee.';
COMMENT ON COLUMN leave_message_event.agent IS 'Name of the agent who made the change, or, for a release because an agent was disabled (reason agent_disabled), the name of that agent (kept even if the agent is renamed or removed later).';
COMMENT ON COLUMN leave_message_event.reason IS 'Why a change no agent asked for was made: agent_disabled (its assignee was disabled, so the message went back to pending). NULL for an agent''s own actions.';
COMMENT ON CONSTRAINT leave_message_event_reason_check ON leave_message_event IS 'Only a release can have a reason, and agent_disabled is the only one.';

-- Every instance ends the live streams of an agent whose key stopped working. The notification
-- is rare (an operator's command), and it is heard on the session that already listens for new
-- messages, so it wakes no one who was not awake anyway.
CREATE FUNCTION agent_notify_access_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('leavemsg_agent_access', OLD.name);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION agent_notify_access_changed() IS 'Sends the name of an agent that was disabled, got a new key, was renamed or deleted on channel leavemsg_agent_access; every instance rechecks that agent''s open live streams.';
CREATE TRIGGER agent_notify_access_changed
    AFTER UPDATE ON agent
    FOR EACH ROW
    WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled OR OLD.key_id IS DISTINCT FROM NEW.key_id
          OR OLD.key_hash IS DISTINCT FROM NEW.key_hash OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION agent_notify_access_changed();
COMMENT ON TRIGGER agent_notify_access_changed ON agent IS 'Announces a change of an agent''s access (not of last_seen_at) to every instance (LISTEN leavemsg_agent_access).';
CREATE TRIGGER agent_notify_removed
    AFTER DELETE ON agent
    FOR EACH ROW EXECUTE FUNCTION agent_notify_access_changed();
COMMENT ON TRIGGER agent_notify_removed ON agent IS 'Announces a deleted agent to every instance (LISTEN leavemsg_agent_access).';
