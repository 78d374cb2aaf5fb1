-- Instances keep recently seen visitor tokens in memory so doLeaveMessage can accept a token
-- without a database round trip. These notifications tell every instance when a token stops
-- being valid before its expiry, so the copies go at once. (The write itself re-checks the
-- token in the same statement, so a stale copy can never store a message.)

CREATE FUNCTION visitor_token_notify_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.token_hash IS DISTINCT FROM NEW.token_hash THEN
        PERFORM pg_notify('leavemsg_token_revoked', encode(OLD.token_hash, 'hex'));
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION visitor_token_notify_revoked() IS 'Announces a replaced or deleted visitor token (hex SHA-256) on channel leavemsg_token_revoked.';
CREATE TRIGGER visitor_token_notify_revoked
    AFTER UPDATE OR DELETE ON visitor_token
    FOR EACH ROW EXECUTE FUNCTION visitor_token_notify_revoked();
COMMENT ON TRIGGER visitor_token_notify_revoked ON visitor_token IS 'Lets every instance drop its in-memory copy of a token that was replaced or deleted.';

CREATE FUNCTION web_channel_notify_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('leavemsg_channel_changed', NEW.id::text);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION web_channel_notify_changed() IS 'Announces a changed web channel (its id) on channel leavemsg_channel_changed.';
CREATE TRIGGER web_channel_notify_changed
    AFTER UPDATE ON web_channel
    FOR EACH ROW EXECUTE FUNCTION web_channel_notify_changed();
COMMENT ON TRIGGER web_channel_notify_changed ON web_channel IS 'Lets every instance drop in-memory tokens of a channel that was disabled or changed.';
