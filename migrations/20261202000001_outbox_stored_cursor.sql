-- message.stored without a row per message (CONTRACT §7, and intake's pace with an endpoint).
-- The outbox migration wrote, for every stored message, an event row and a delivery row per
-- endpoint, in the intake writer's statement: that more than doubled the database's work per
-- message. Now the writer's statement adds one row for the whole batch (the ids it stored, in
-- outbox_stored), and each endpoint keeps its place in those rows by transaction id (webhook_cursor): the
-- dispatchers send what lies past it, building each payload from the message itself, and move
-- the place on. Only a try that fails becomes an event and a delivery row (retried as before).
-- Agent actions, erasures and e-mails keep their rows: they are rarer than stored messages.

-- A stored message's event id (the webhook-id, evt_ + 32 hex digits) is this installation's
-- random prefix and the message's id, so that every endpoint and every try gets the same one
-- without a row, and two installations sending to one receiver never share one.
CREATE TABLE outbox_identity (
    one     boolean PRIMARY KEY DEFAULT true CONSTRAINT outbox_identity_one_check CHECK (one),
    prefix  text    NOT NULL DEFAULT left(replace(gen_random_uuid()::text, '-', ''), 16)
        CONSTRAINT outbox_identity_prefix_check CHECK (prefix ~ '^[0-9a-f]{16}$')
);
INSERT INTO outbox_identity DEFAULT VALUES;
COMMENT ON TABLE outbox_identity IS 'One row: the random prefix of this installation''s message.stored event ids.';
COMMENT ON COLUMN outbox_identity.prefix IS '16 hex digits, the first half of every message.stored event id; the second half is the message id.';

CREATE FUNCTION outbox_stored_uid(message_id bigint) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT (prefix || lpad(to_hex(message_id), 16, '0'))::uuid FROM outbox_identity
$$;
COMMENT ON FUNCTION outbox_stored_uid(bigint) IS 'The event id (webhook-id without evt_) of a message''s message.stored event.';

CREATE FUNCTION outbox_stored_message(uid uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT ('x' || right(replace(uid::text, '-', ''), 16))::bit(64)::bigint
    FROM outbox_identity
    WHERE left(replace(uid::text, '-', ''), 16) = prefix
$$;
COMMENT ON FUNCTION outbox_stored_message(uuid) IS 'The message whose message.stored event has this id; NULL if it is not such an id.';

-- The message as message.stored carries it: as it was stored (pending, unassigned, no attempt,
-- due when the visitor allowed), whatever happened to it since. A view, which the planner
-- folds into the query that reads it (no function call per message).
CREATE VIEW leave_message_as_stored AS
SELECT m.id, m.channel_id, m.user_id, m.user_name, m.phone_no, m.phone_digits, m.message,
       m.client_ip, m.forwarded_for, m.user_agent, m.received_at,
       'pending'::text AS status, NULL::text AS assigned_to, NULL::timestamptz AS assigned_at,
       NULL::text AS processed_by, NULL::timestamptz AS processed_at, NULL::text AS outcome,
       NULL::text AS note, m.submission_key, m.callback_after,
       greatest(m.received_at, m.callback_after) AS due_at, 0::smallint AS attempts
FROM leave_message m;
COMMENT ON VIEW leave_message_as_stored IS 'Each message as it was when stored (what its message.stored event carries): pending, unassigned, no attempt, due at received_at or the visitor''s callback_after.';

CREATE TABLE outbox_stored (
    xid          bigint      NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    at           timestamptz NOT NULL DEFAULT now(),
    message_ids  bigint[]    NOT NULL,
    channel_ids  uuid[]      NOT NULL,
    CONSTRAINT outbox_stored_ids_check CHECK (cardinality(message_ids) = cardinality(channel_ids))
);
COMMENT ON TABLE outbox_stored IS 'The messages one intake statement stored while an endpoint took message.stored events: one row per statement, not per message. Endpoints keep their place in it (webhook_cursor.stored_upto); kept, like delivered events, for webhook redeliver.';
COMMENT ON COLUMN outbox_stored.xid IS 'The storing transaction''s id (64 bits, never wraps): endpoints go through the rows in this order, only below the oldest transaction still running, so that no row can appear behind them.';
COMMENT ON COLUMN outbox_stored.at IS 'When the storing transaction began (the messages'' received_at).';
COMMENT ON COLUMN outbox_stored.message_ids IS 'The messages stored, in id order (no foreign key: erased and purged messages leave their ids).';
COMMENT ON COLUMN outbox_stored.channel_ids IS 'Each message''s channel, for endpoints of one channel and for what is sent after an erasure.';
CREATE INDEX outbox_stored_xid_idx ON outbox_stored (xid);
COMMENT ON INDEX outbox_stored_xid_idx IS 'The endpoints'' cursors: what lies past each one''s place.';

-- Each endpoint's place, in a table of its own: the dispatchers update it all the time, and the
-- intake statement reads webhook_endpoint for every batch, which should not have to step over
-- the old versions of busy rows.
CREATE TABLE webhook_cursor (
    endpoint_id  uuid        PRIMARY KEY REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    stored_from  bigint      NOT NULL DEFAULT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
    stored_upto  bigint      NOT NULL DEFAULT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
    lease        uuid,
    lease_until  timestamptz
);
COMMENT ON TABLE webhook_cursor IS 'Each webhook endpoint''s place in outbox_stored (one row per endpoint, made with it).';
COMMENT ON COLUMN webhook_cursor.stored_from IS 'Where its place started: the outbox_stored rows from here on are its stored messages (sent, or still to send). Below every transaction running when the endpoint was added.';
COMMENT ON COLUMN webhook_cursor.stored_upto IS 'Its place: every outbox_stored row with a smaller xid was sent to it or became a delivery row to retry.';
COMMENT ON COLUMN webhook_cursor.lease IS 'The dispatcher sending the rows past stored_upto right now (a random id per take); only it may move stored_upto.';
COMMENT ON COLUMN webhook_cursor.lease_until IS 'Until when that dispatcher holds them: if it dies, another takes them over after this.';
INSERT INTO webhook_cursor (endpoint_id) SELECT id FROM webhook_endpoint;

CREATE FUNCTION webhook_endpoint_cursor() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_cursor (endpoint_id) VALUES (NEW.id);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION webhook_endpoint_cursor() IS 'Gives a new endpoint its place in outbox_stored.';
CREATE TRIGGER webhook_endpoint_cursor
    AFTER INSERT ON webhook_endpoint
    FOR EACH ROW EXECUTE FUNCTION webhook_endpoint_cursor();
COMMENT ON TRIGGER webhook_endpoint_cursor ON webhook_endpoint IS 'Every endpoint has a webhook_cursor row from its first moment.';

-- An agent action's (or an erasure's) event is sent to an endpoint only once the endpoint's
-- place in outbox_stored has passed every transaction that had committed when the action was
-- written: by then the message's message.stored was sent, or is a delivery row that goes first.
ALTER TABLE outbox_event
    ADD COLUMN horizon bigint DEFAULT pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
COMMENT ON COLUMN outbox_event.horizon IS 'The first transaction id not yet finished when the event was written: it waits until an endpoint''s place (webhook_cursor.stored_upto) reaches this, so that it follows its message''s message.stored. NULL for events written before this column.';

-- Nothing written unless someone listens. For webhooks: one outbox_stored row for the statement.
-- For e-mail: the event (with its stored-event id) and the e-mail delivery, as before.
CREATE OR REPLACE FUNCTION leave_message_outbox_stored() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_endpoint) THEN
        -- Which of the statement's channels some endpoint takes, asked once per channel.
        INSERT INTO outbox_stored (message_ids, channel_ids)
        SELECT array_agg(s.id ORDER BY s.id), array_agg(s.channel_id ORDER BY s.id)
        FROM stored s
        WHERE s.channel_id IN (
            SELECT d.channel_id FROM (SELECT DISTINCT channel_id FROM stored) d
            WHERE EXISTS (SELECT 1 FROM webhook_endpoint w
                          WHERE webhook_endpoint_wants(w, 'message.stored', d.channel_id)))
        HAVING count(*) > 0;
    END IF;
    IF EXISTS (SELECT 1 FROM web_channel WHERE notify_emails <> '{}') THEN
        WITH written AS (
            INSERT INTO outbox_event (uid, type, message_id, channel_id, at, data)
            SELECT outbox_stored_uid(s.id), 'message.stored', s.id, s.channel_id, s.received_at,
                   outbox_message_data(s, c)
            FROM stored s JOIN web_channel c ON c.id = s.channel_id
            WHERE c.notify_emails <> '{}'
            ORDER BY s.id
            RETURNING id
        )
        INSERT INTO email_delivery (event_id) SELECT id FROM written;
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION leave_message_outbox_stored() IS 'For the messages one statement stored: one outbox_stored row when a webhook endpoint takes message.stored, and the event with its e-mail delivery for a channel with notify addresses.';
