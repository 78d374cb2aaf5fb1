-- Instances no longer keep LISTEN sessions open to hear about replaced tokens and changed
-- channels: every listening session is woken by every notifying commit in the database, which
-- cost each stored message a wake-up of every instance. An instance's memory of valid tokens is
-- now confirmed by the database before it matters (the write re-checks the token in the same
-- statement; other refusals ask first), so these announcements are not needed.
DROP TRIGGER visitor_token_notify_revoked ON visitor_token;
DROP FUNCTION visitor_token_notify_revoked();
DROP TRIGGER web_channel_notify_changed ON web_channel;
DROP FUNCTION web_channel_notify_changed();
