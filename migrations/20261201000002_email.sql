-- E-mail to the team (CONTRACT §7.2): a channel may name addresses that get one e-mail per
-- stored message. The e-mail goes through the same outbox as webhooks: the message.stored event
-- and its e-mail delivery are written by the intake writer's own statement, and dispatchers on
-- every instance send what is due. A channel without addresses, while no webhook endpoint
-- takes its messages, still writes nothing to the outbox.

-- Whether every element looks like a bare e-mail address (local@domain, printable ASCII, no
-- spaces, one @, at most 254 characters), and there are at most 20 of them. The service parses
-- addresses more strictly before writing them; this keeps anything else out.
CREATE FUNCTION email_addresses_look_valid(addresses text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT cardinality(addresses) <= 20
       AND array_position(addresses, NULL) IS NULL
       AND coalesce(bool_and(a ~ '^[!-?A-~]+@[!-?A-~]+$' AND length(a) <= 254), true)
    FROM unnest(addresses) a
$$;
COMMENT ON FUNCTION email_addresses_look_valid(text[]) IS 'The check on web_channel.notify_emails: at most 20 bare addresses (local@domain, printable ASCII, no spaces, one @, at most 254 characters each).';

ALTER TABLE web_channel
    ADD COLUMN notify_emails text[] NOT NULL DEFAULT '{}'
        CONSTRAINT web_channel_notify_emails_check CHECK (email_addresses_look_valid(notify_emails));
COMMENT ON COLUMN web_channel.notify_emails IS 'Addresses that get one e-mail per stored message of this channel (channel create/update --notify-email); empty: none. An e-mail goes to the addresses the channel has when it is sent.';

CREATE TABLE email_delivery (
    event_id    bigint      PRIMARY KEY REFERENCES outbox_event (id) ON DELETE CASCADE,
    status      text        NOT NULL DEFAULT 'pending'
        CONSTRAINT email_delivery_status_check CHECK (status IN ('pending', 'delivered', 'dropped', 'failed')),
    tries       integer     NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    since       timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    done_at     timestamptz,
    CONSTRAINT email_delivery_done_check CHECK ((status = 'pending') = (done_at IS NULL))
);
COMMENT ON TABLE email_delivery IS 'The e-mail to the team about one stored message (its message.stored event): pending until the mail server accepts it (delivered), the message was erased or the channel has no address left (dropped: nothing sent), or it has waited LEAVEMSG_WEBHOOK_MAX_AGE_SECS (failed).';
COMMENT ON COLUMN email_delivery.event_id IS 'The message.stored event: the message as it was stored (NULL data once erased or purged: then nothing is sent).';
COMMENT ON COLUMN email_delivery.status IS 'pending, delivered (the mail server accepted it), dropped (not sent: the message was erased, or the channel has no address any more) or failed (gave up).';
COMMENT ON COLUMN email_delivery.tries IS 'Tries so far (a try under way counts).';
COMMENT ON COLUMN email_delivery.next_at IS 'Pending: when it may be tried (again). While a try is under way, its deadline with a margin: an instance that dies mid-try leaves it to the others after that.';
COMMENT ON COLUMN email_delivery.since IS 'When it was queued (the message''s commit): it gives up LEAVEMSG_WEBHOOK_MAX_AGE_SECS after.';
COMMENT ON COLUMN email_delivery.last_error IS 'What the last failed try got (a refused connection, a timeout, the mail server''s answer; never a password); for a dropped one, why nothing was sent.';
COMMENT ON COLUMN email_delivery.done_at IS 'When it was delivered, dropped or given up; NULL while pending.';
CREATE INDEX email_delivery_due_idx ON email_delivery (next_at) WHERE status = 'pending';
COMMENT ON INDEX email_delivery_due_idx IS 'The e-mail dispatchers'' queue: pending e-mails by due time.';

CREATE OR REPLACE FUNCTION leave_message_outbox_stored() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Nobody listens: nothing is written (both tables are small; intake pays two lookups).
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoint)
       AND NOT EXISTS (SELECT 1 FROM web_channel WHERE notify_emails <> '{}') THEN
        RETURN NULL;
    END IF;
    WITH written AS (
        INSERT INTO outbox_event (type, message_id, channel_id, at, data)
        SELECT 'message.stored', s.id, s.channel_id, s.received_at, outbox_message_data(s, c)
        FROM stored s JOIN web_channel c ON c.id = s.channel_id
        WHERE c.notify_emails <> '{}'
           OR EXISTS (SELECT 1 FROM webhook_endpoint w
                      WHERE webhook_endpoint_wants(w, 'message.stored', s.channel_id))
        ORDER BY s.id
        RETURNING id, type, message_id, channel_id
    ), hooks AS (
        INSERT INTO webhook_delivery (endpoint_id, event_id, message_id)
        SELECT w.id, e.id, e.message_id
        FROM written e JOIN webhook_endpoint w ON webhook_endpoint_wants(w, e.type, e.channel_id)
    )
    INSERT INTO email_delivery (event_id)
    SELECT e.id
    FROM written e JOIN web_channel c ON c.id = e.channel_id
    WHERE c.notify_emails <> '{}';
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION leave_message_outbox_stored() IS 'Writes message.stored events for the messages one statement stored when any webhook endpoint takes them or their channel has notify addresses, with a delivery per subscribed endpoint and an e-mail delivery for a channel with addresses.';
