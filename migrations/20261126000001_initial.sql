-- leavemsg initial schema: web channels, agents, visitor tokens and the left messages.
-- Append-only: change the schema with a new migration, never by editing this one.

CREATE TABLE web_channel (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    origins     text[]      NOT NULL DEFAULT '{}',
    cross_site  boolean     NOT NULL DEFAULT false,
    prompt      text,
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz,
    CHECK (enabled = (disabled_at IS NULL))
);
COMMENT ON TABLE web_channel IS 'Web channel configurations: one per site or widget that takes messages; its id is the Configuration ID visitors send as channelId.';
COMMENT ON COLUMN web_channel.id IS 'Configuration ID (channelId in applyToken, channelConfigId in the form URL).';
COMMENT ON COLUMN web_channel.name IS 'Human name of the channel, for agents and operators.';
COMMENT ON COLUMN web_channel.origins IS 'Web origins (scheme://host[:port]) whose browsers may call the visitor interface cross-origin; empty means same-origin and non-browser callers only.';
COMMENT ON COLUMN web_channel.cross_site IS 'Issue the token cookie with SameSite=None; Secure, for sites that embed the interface from another site.';
COMMENT ON COLUMN web_channel.prompt IS 'Text shown above the visitor form; NULL shows the default prompt.';
COMMENT ON COLUMN web_channel.enabled IS 'false once disabled: its tokens stop working and applyToken is refused.';
COMMENT ON COLUMN web_channel.created_at IS 'When the channel was created.';
COMMENT ON COLUMN web_channel.disabled_at IS 'When the channel was disabled; NULL while enabled.';

CREATE TABLE agent (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    is_admin    boolean     NOT NULL DEFAULT false,
    key_id      text        NOT NULL UNIQUE,
    key_hash    bytea       NOT NULL CHECK (length(key_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE agent IS 'Contact-center agents who use the agent interface; each has one API key.';
COMMENT ON COLUMN agent.id IS 'Surrogate key.';
COMMENT ON COLUMN agent.name IS 'Unique agent name, shown as assigned_to on messages.';
COMMENT ON COLUMN agent.is_admin IS 'Admins may assign messages to others and act on messages assigned to someone else.';
COMMENT ON COLUMN agent.key_id IS 'Public part of the API key, used to find the agent; not a secret.';
COMMENT ON COLUMN agent.key_hash IS 'SHA-256 of the secret part of the API key; the key itself is never stored.';
COMMENT ON COLUMN agent.created_at IS 'When the agent was created.';

CREATE TABLE token_signing_key (
    id          smallint    PRIMARY KEY CHECK (id = 1),
    secret      bytea       NOT NULL CHECK (length(secret) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE token_signing_key IS 'The HMAC-SHA256 key that signs ccmessaging-tokens, shared by every instance; one row, created on first start. Deleting it invalidates every token.';
COMMENT ON COLUMN token_signing_key.id IS 'Always 1: there is one key.';
COMMENT ON COLUMN token_signing_key.secret IS '256-bit random key. Secret: whoever reads it can forge visitor tokens.';
COMMENT ON COLUMN token_signing_key.created_at IS 'When the key was generated.';

CREATE TABLE visitor_token (
    channel_id  uuid        NOT NULL REFERENCES web_channel (id) ON DELETE CASCADE,
    user_id     text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 32),
    user_name   text        NOT NULL,
    token_hash  bytea       NOT NULL CHECK (length(token_hash) = 32),
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (channel_id, user_id),
    CHECK (expires_at > issued_at)
);
COMMENT ON TABLE visitor_token IS 'The current ccmessaging-token of each (channel, visitor): a newer applyToken replaces the row, which revokes the older token.';
COMMENT ON COLUMN visitor_token.channel_id IS 'Channel the token was issued for.';
COMMENT ON COLUMN visitor_token.user_id IS 'The visitor''s userId from applyToken.';
COMMENT ON COLUMN visitor_token.user_name IS 'The visitor''s userName from applyToken, copied onto their messages.';
COMMENT ON COLUMN visitor_token.token_hash IS 'SHA-256 of the token; the token itself is never stored.';
COMMENT ON COLUMN visitor_token.issued_at IS 'When the token was issued.';
COMMENT ON COLUMN visitor_token.expires_at IS 'When the token stops being accepted.';
CREATE INDEX visitor_token_expires_at_idx ON visitor_token (expires_at);

CREATE TABLE leave_message (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id     uuid        NOT NULL REFERENCES web_channel (id),
    user_id        text        NOT NULL,
    user_name      text        NOT NULL,
    phone_no       text        NOT NULL CHECK (length(phone_no) BETWEEN 3 AND 32),
    phone_digits   text        NOT NULL CHECK (phone_digits ~ '^[0-9]{3,32}$'),
    message        text        NOT NULL CHECK (length(message) BETWEEN 1 AND 2000),
    client_ip      inet        NOT NULL,
    forwarded_for  text,
    user_agent     text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    status         text        NOT NULL DEFAULT 'pending'
                               CHECK (status IN ('pending', 'assigned', 'processed')),
    assigned_to    text        REFERENCES agent (name) ON UPDATE CASCADE,
    assigned_at    timestamptz,
    processed_by   text        REFERENCES agent (name) ON UPDATE CASCADE,
    processed_at   timestamptz,
    outcome        text        CHECK (outcome IN ('called_back', 'no_answer', 'wrong_number', 'spam')),
    note           text        CHECK (length(note) <= 2000),
    submission_key bytea       NOT NULL UNIQUE CHECK (length(submission_key) = 32),
    CONSTRAINT leave_message_status_fields_check CHECK (
        CASE status
            WHEN 'pending'   THEN assigned_to IS NULL AND assigned_at IS NULL
                                  AND processed_at IS NULL AND processed_by IS NULL AND outcome IS NULL
            WHEN 'assigned'  THEN assigned_to IS NOT NULL AND assigned_at IS NOT NULL
                                  AND processed_at IS NULL AND processed_by IS NULL AND outcome IS NULL
            WHEN 'processed' THEN processed_at IS NOT NULL AND processed_by IS NOT NULL AND outcome IS NOT NULL
        END
    )
);
COMMENT ON TABLE leave_message IS 'Messages left by web visitors ("call me back"), one row per accepted doLeaveMessage call, and what agents did with them.';
COMMENT ON COLUMN leave_message.id IS 'Message id, in the order messages were stored.';
COMMENT ON COLUMN leave_message.channel_id IS 'Web channel (Configuration ID) the message came through.';
COMMENT ON COLUMN leave_message.user_id IS 'The visitor''s userId, from their token.';
COMMENT ON COLUMN leave_message.user_name IS 'The visitor''s userName, from their token.';
COMMENT ON COLUMN leave_message.phone_no IS 'Contact number as the visitor typed it, trimmed (phoneNo).';
COMMENT ON COLUMN leave_message.phone_digits IS 'Only the digits of phone_no, for searching: "+1 555-0107" is 15550107.';
COMMENT ON COLUMN leave_message.message IS 'Message text (leaveMessage), trimmed; 1-2000 characters; may contain tabs and newlines.';
COMMENT ON COLUMN leave_message.client_ip IS 'The visitor''s IP: the socket peer, or the client named by a trusted proxy''s X-Forwarded-For / X-Real-IP.';
COMMENT ON COLUMN leave_message.forwarded_for IS 'The raw X-Forwarded-For chain as received, NULL if none; not trusted, kept for investigation.';
COMMENT ON COLUMN leave_message.user_agent IS 'The User-Agent header as received, NULL if none.';
COMMENT ON COLUMN leave_message.received_at IS 'When the message was stored (UTC).';
COMMENT ON COLUMN leave_message.status IS 'pending (to be allocated) -> assigned (allocated to an agent, unprocessed) -> processed.';
COMMENT ON COLUMN leave_message.assigned_to IS 'Agent name the message is allocated to; NULL while pending.';
COMMENT ON COLUMN leave_message.assigned_at IS 'When it was last allocated.';
COMMENT ON COLUMN leave_message.processed_by IS 'Agent who recorded the outcome.';
COMMENT ON COLUMN leave_message.processed_at IS 'When the outcome was recorded.';
COMMENT ON COLUMN leave_message.outcome IS 'Result of the callback: called_back, no_answer, wrong_number or spam.';
COMMENT ON COLUMN leave_message.note IS 'The agent''s note on the outcome.';
COMMENT ON COLUMN leave_message.submission_key IS 'SHA-256 of (token, phone_no, message): a resubmission with the same token and content is stored once.';
COMMENT ON CONSTRAINT leave_message_status_fields_check ON leave_message IS 'Each status has exactly the fields it needs: no assignee while pending, no outcome before processed.';

-- The pending queue: claim-next and the pending list read it oldest first.
CREATE INDEX leave_message_pending_idx ON leave_message (received_at, id) WHERE status = 'pending';
COMMENT ON INDEX leave_message_pending_idx IS 'Pending queue, oldest first: keeps claim-next and the pending list fast however many processed rows there are.';
CREATE INDEX leave_message_pending_channel_idx ON leave_message (channel_id, received_at, id) WHERE status = 'pending';
COMMENT ON INDEX leave_message_pending_channel_idx IS 'Pending queue of one channel, oldest first (claim-next?channelId=).';
CREATE INDEX leave_message_received_idx ON leave_message (received_at, id);
COMMENT ON INDEX leave_message_received_idx IS 'All messages in list order, for paging and time ranges.';
CREATE INDEX leave_message_phone_idx ON leave_message (phone_digits, received_at, id);
COMMENT ON INDEX leave_message_phone_idx IS 'Find by phone number (digits only), in list order; also used by erase.';
CREATE INDEX leave_message_assigned_idx ON leave_message (assigned_to, received_at, id) WHERE assigned_to IS NOT NULL;
COMMENT ON INDEX leave_message_assigned_idx IS 'Messages of one agent, in list order.';
