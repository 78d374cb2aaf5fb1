-- Messages written together (one multi-row INSERT from the group-commit writer) are announced
-- together: one notification per statement carrying the new ids, comma-separated, instead of
-- one per row. Listeners hear of them at commit, as before.
CREATE OR REPLACE FUNCTION leave_message_notify_stored() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := ARRAY(SELECT id FROM stored ORDER BY id);
BEGIN
    -- A payload holds under 8000 bytes: 300 ids of up to 20 characters with their commas.
    FOR part IN 0 .. (cardinality(ids) + 299) / 300 - 1 LOOP
        PERFORM pg_notify('leave_message_stored',
                          array_to_string(ids[part * 300 + 1 : part * 300 + 300], ','));
    END LOOP;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION leave_message_notify_stored() IS 'Sends the ids of the messages one statement stored (comma-separated, at most 300 per notification) on channel leave_message_stored; every leavemsg instance listens and streams them to agents.';

DROP TRIGGER leave_message_notify_stored ON leave_message;
CREATE TRIGGER leave_message_notify_stored
    AFTER INSERT ON leave_message
    REFERENCING NEW TABLE AS stored
    FOR EACH STATEMENT EXECUTE FUNCTION leave_message_notify_stored();
COMMENT ON TRIGGER leave_message_notify_stored ON leave_message IS 'Announces the messages each statement stored to the agents'' live streams (LISTEN leave_message_stored).';
