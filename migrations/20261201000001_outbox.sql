-- Notifications (CONTRACT §7): webhook endpoints, and a transactional outbox. Every change of a
-- message writes its event in the statement that makes the change (triggers below), with one
-- delivery per endpoint subscribed at that moment; dispatchers on every instance send them.
-- Nothing is written while no endpoint exists, so intake without subscribers is unchanged.

CREATE TABLE webhook_endpoint (
    id          uuid        PRIMARY KEY,
    url         text        NOT NULL
        CONSTRAINT webhook_endpoint_url_check CHECK (url ~ '^https?://' AND length(url) <= 2000),
    channel_id  uuid        REFERENCES web_channel (id),
    events      text[]      NOT NULL DEFAULT '{}'
        CONSTRAINT webhook_endpoint_events_check CHECK (events <@ ARRAY[
            'message.stored', 'message.claimed', 'message.assigned', 'message.released',
            'message.attempted', 'message.processed', 'message.erased']),
    secret      text        NOT NULL
        CONSTRAINT webhook_endpoint_secret_check CHECK (secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_endpoint IS 'Receivers of signed webhooks (CONTRACT §7.1), added with leavemsg webhook add or the admin API.';
COMMENT ON COLUMN webhook_endpoint.id IS 'Random id, shown by webhook list.';
COMMENT ON COLUMN webhook_endpoint.url IS 'Where events are POSTed (http or https).';
COMMENT ON COLUMN webhook_endpoint.channel_id IS 'Only this channel''s events; NULL: every channel''s.';
COMMENT ON COLUMN webhook_endpoint.events IS 'Event types sent to it; empty: every type.';
COMMENT ON COLUMN webhook_endpoint.secret IS 'Signing secret (whsec_ + base64 key), shown once when added; never logged nor listed.';
COMMENT ON COLUMN webhook_endpoint.created_at IS 'When it was added; only events committed after that are sent to it.';

CREATE TABLE outbox_event (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid         uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    type        text        NOT NULL
        CONSTRAINT outbox_event_type_check CHECK (type IN (
            'message.stored', 'message.claimed', 'message.assigned', 'message.released',
            'message.attempted', 'message.processed', 'message.erased')),
    message_id  bigint      NOT NULL,
    channel_id  uuid        NOT NULL,
    at          timestamptz NOT NULL,
    data        jsonb
);
COMMENT ON TABLE outbox_event IS 'One row per change of a message while any endpoint is subscribed, written by the statement that made the change.';
COMMENT ON COLUMN outbox_event.id IS 'In the order the events were written: a message''s events are sent in this order.';
COMMENT ON COLUMN outbox_event.uid IS 'The webhook-id sent with every try of this event (evt_ + these 32 hex digits): receivers deduplicate on it.';
COMMENT ON COLUMN outbox_event.type IS 'message.stored, .claimed, .assigned, .released, .attempted, .processed or .erased.';
COMMENT ON COLUMN outbox_event.message_id IS 'The message (no foreign key: the event outlives an erased message).';
COMMENT ON COLUMN outbox_event.channel_id IS 'The message''s channel, for endpoints of one channel.';
COMMENT ON COLUMN outbox_event.at IS 'When the change happened (the message''s received_at, or the history row''s at).';
COMMENT ON COLUMN outbox_event.data IS 'The message as it was after the change, in the store''s row fields (snake_case), plus "attempt" for message.attempted. Removed when the message is erased or purged.';

CREATE TABLE webhook_delivery (
    endpoint_id uuid        NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    event_id    bigint      NOT NULL REFERENCES outbox_event (id) ON DELETE CASCADE,
    message_id  bigint      NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
        CONSTRAINT webhook_delivery_status_check CHECK (status IN ('pending', 'delivered', 'failed')),
    tries       integer     NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    done_at     timestamptz,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, event_id)
);
COMMENT ON TABLE webhook_delivery IS 'One event to one endpoint: pending until the endpoint answers 2xx (delivered) or the event is older than LEAVEMSG_WEBHOOK_MAX_AGE_SECS (failed).';
COMMENT ON COLUMN webhook_delivery.message_id IS 'The event''s message: an endpoint gets a message''s events one at a time, in order.';
COMMENT ON COLUMN webhook_delivery.tries IS 'Tries so far (a try under way counts).';
COMMENT ON COLUMN webhook_delivery.next_at IS 'Pending: when it may be tried (again). While a try is under way, its deadline with a margin: an instance that dies mid-try leaves it to the others after that.';
COMMENT ON COLUMN webhook_delivery.last_error IS 'What the last failed try got: an HTTP status, a timeout, a refused connection.';
COMMENT ON COLUMN webhook_delivery.done_at IS 'When it was delivered or given up.';
COMMENT ON COLUMN webhook_delivery.since IS 'When it was queued (the change''s commit, or webhook redeliver): it gives up LEAVEMSG_WEBHOOK_MAX_AGE_SECS after.';
CREATE INDEX webhook_delivery_due_idx ON webhook_delivery (endpoint_id, next_at) WHERE status = 'pending';
COMMENT ON INDEX webhook_delivery_due_idx IS 'The dispatchers'' queue: each endpoint''s pending deliveries by due time.';
CREATE INDEX webhook_delivery_order_idx ON webhook_delivery (endpoint_id, message_id, event_id) WHERE status = 'pending';
COMMENT ON INDEX webhook_delivery_order_idx IS 'An earlier pending event of the same message to the same endpoint holds the later ones back.';
CREATE INDEX webhook_delivery_failed_idx ON webhook_delivery (endpoint_id, done_at) WHERE status = 'failed';
COMMENT ON INDEX webhook_delivery_failed_idx IS 'webhook failed.';
CREATE INDEX outbox_event_message_idx ON outbox_event (message_id);
COMMENT ON INDEX outbox_event_message_idx IS 'Erase and purge find a message''s events.';

-- The message as an event carries it: the fields of the store's MessageRow.
CREATE FUNCTION outbox_message_data(m leave_message, c web_channel) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', m.id, 'channel_id', m.channel_id, 'user_id', m.user_id, 'user_name', m.user_name,
        'phone_no', m.phone_no, 'leave_message', m.message, 'client_ip', host(m.client_ip),
        'user_agent', m.user_agent, 'received_at', m.received_at, 'status', m.status,
        'assigned_to', m.assigned_to, 'assigned_at', m.assigned_at,
        'processed_at', m.processed_at, 'outcome', m.outcome, 'note', m.note,
        'callback_after', m.callback_after, 'due_at', coalesce(m.due_at, m.received_at),
        'overdue_at', coalesce(m.due_at, m.received_at) + make_interval(mins => c.sla_minutes),
        'overdue', m.status <> 'processed'
                   AND coalesce(m.due_at, m.received_at) <= now() - make_interval(mins => c.sla_minutes),
        'attempts', m.attempts, 'max_attempts', c.max_attempts)
$$;
COMMENT ON FUNCTION outbox_message_data(leave_message, web_channel) IS 'A message as its events carry it (the store''s MessageRow fields).';

-- Whether an endpoint takes events of this type from this channel.
CREATE FUNCTION webhook_endpoint_wants(w webhook_endpoint, event_type text, channel uuid)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT (w.channel_id IS NULL OR w.channel_id = channel)
       AND (cardinality(w.events) = 0 OR event_type = ANY (w.events))
$$;
COMMENT ON FUNCTION webhook_endpoint_wants(webhook_endpoint, text, uuid) IS 'An endpoint''s subscription: its channel (or all) and its event types (or all).';

CREATE FUNCTION leave_message_outbox_stored() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoint) THEN
        RETURN NULL;
    END IF;
    WITH written AS (
        INSERT INTO outbox_event (type, message_id, channel_id, at, data)
        SELECT 'message.stored', s.id, s.channel_id, s.received_at, outbox_message_data(s, c)
        FROM stored s JOIN web_channel c ON c.id = s.channel_id
        WHERE EXISTS (SELECT 1 FROM webhook_endpoint w
                      WHERE webhook_endpoint_wants(w, 'message.stored', s.channel_id))
        ORDER BY s.id
        RETURNING id, type, message_id, channel_id
    )
    INSERT INTO webhook_delivery (endpoint_id, event_id, message_id)
    SELECT w.id, e.id, e.message_id
    FROM written e JOIN webhook_endpoint w ON webhook_endpoint_wants(w, e.type, e.channel_id);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION leave_message_outbox_stored() IS 'Writes message.stored events for the messages one statement stored, with a delivery per subscribed endpoint, when any endpoint takes them.';
CREATE TRIGGER leave_message_outbox_stored
    AFTER INSERT ON leave_message
    REFERENCING NEW TABLE AS stored
    FOR EACH STATEMENT EXECUTE FUNCTION leave_message_outbox_stored();
COMMENT ON TRIGGER leave_message_outbox_stored ON leave_message IS 'message.stored events, in the intake writer''s own statement.';

CREATE FUNCTION leave_message_event_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoint) THEN
        RETURN NULL;
    END IF;
    WITH typed AS (
        SELECT h.*, CASE h.action WHEN 'claim' THEN 'message.claimed'
                                  WHEN 'assign' THEN 'message.assigned'
                                  WHEN 'release' THEN 'message.released'
                                  WHEN 'attempt' THEN 'message.attempted'
                                  ELSE 'message.processed' END AS type
        FROM changes h
    ), written AS (
        INSERT INTO outbox_event (type, message_id, channel_id, at, data)
        SELECT h.type, m.id, m.channel_id, h.at,
               outbox_message_data(m, c)
                 || CASE WHEN h.action = 'attempt'
                         THEN jsonb_build_object('attempt', jsonb_build_object(
                                  'result', h.result, 'note', h.note, 'agent', h.agent))
                         ELSE '{}'::jsonb END
        FROM typed h
        JOIN leave_message m ON m.id = h.message_id
        JOIN web_channel c ON c.id = m.channel_id
        WHERE EXISTS (SELECT 1 FROM webhook_endpoint w
                      WHERE webhook_endpoint_wants(w, h.type, m.channel_id))
        ORDER BY h.id
        RETURNING id, type, message_id, channel_id
    )
    INSERT INTO webhook_delivery (endpoint_id, event_id, message_id)
    SELECT w.id, e.id, e.message_id
    FROM written e JOIN webhook_endpoint w ON webhook_endpoint_wants(w, e.type, e.channel_id);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION leave_message_event_outbox() IS 'Writes an event for each history row a statement wrote (claim, assign, release, attempt, process), with the message as it is after the statement and a delivery per subscribed endpoint, when any endpoint takes it.';
CREATE TRIGGER leave_message_event_outbox
    AFTER INSERT ON leave_message_event
    REFERENCING NEW TABLE AS changes
    FOR EACH STATEMENT EXECUTE FUNCTION leave_message_event_outbox();
COMMENT ON TRIGGER leave_message_event_outbox ON leave_message_event IS 'message.claimed/.assigned/.released/.attempted/.processed events, in the statement that made the change.';

CREATE FUNCTION leave_message_outbox_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox_event e SET data = NULL
    FROM gone g
    WHERE e.message_id = g.id AND e.data IS NOT NULL;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION leave_message_outbox_forget() IS 'Removes the data (phone number, text, everything but ids) of the events of messages that were erased or purged, delivered or not: what is still to be sent carries only the ids.';
CREATE TRIGGER leave_message_outbox_forget
    AFTER DELETE ON leave_message
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION leave_message_outbox_forget();
COMMENT ON TRIGGER leave_message_outbox_forget ON leave_message IS 'Erase and purge also remove what the outbox holds of those messages.';
