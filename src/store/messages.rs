//! Writing and deleting rows of the leave_message table.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Store, StoreError};
use crate::domain::{CallbackAfter, ChannelId, MessageText, PhoneNo};

/// A validated message, ready to store.
pub struct NewMessage {
    pub channel_id: ChannelId,
    pub user_id: String,
    pub user_name: String,
    pub phone: PhoneNo,
    pub text: MessageText,
    /// The visitor's "do not call me before"; `None`: as soon as possible.
    pub callback_after: Option<CallbackAfter>,
    pub client_ip: IpAddr,
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
    pub submission_key: [u8; 32],
}

/// What storing did: a new row, or nothing because the same submission is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New(i64),
    AlreadyStored,
}

/// What became of one submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored(Stored),
    /// Its token was replaced or revoked, or its channel disabled, before the write: nothing
    /// was stored.
    TokenNoLongerValid,
}

/// Inserts `rows` (each with the hash of the token it came with) in one statement, which
/// autocommits: every row is committed or none is. A row is written only if its token is still
/// its visitor's current, unexpired token on an enabled channel, checked in the same statement;
/// a row whose submission key is already stored (or repeated in the batch) is not written again.
/// A row is due when received, or at the visitor's callbackAfter when that is later.
/// Returns one outcome per row, in order.
#[tracing::instrument(skip_all, fields(rows = rows.len()))]
pub(super) async fn insert_batch(
    connection: &mut PgConnection,
    rows: &[(&NewMessage, [u8; 32])],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut channel_ids = Vec::with_capacity(rows.len());
    let mut user_ids = Vec::with_capacity(rows.len());
    let mut user_names = Vec::with_capacity(rows.len());
    let mut phones = Vec::with_capacity(rows.len());
    let mut digits = Vec::with_capacity(rows.len());
    let mut texts = Vec::with_capacity(rows.len());
    let mut ips = Vec::with_capacity(rows.len());
    let mut forwarded = Vec::with_capacity(rows.len());
    let mut agents = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut token_hashes = Vec::with_capacity(rows.len());
    let mut callbacks_after = Vec::with_capacity(rows.len());
    for (m, token_hash) in rows {
        channel_ids.push(m.channel_id.as_uuid());
        user_ids.push(m.user_id.as_str());
        user_names.push(m.user_name.as_str());
        phones.push(m.phone.as_str());
        digits.push(m.phone.digits());
        texts.push(m.text.as_str());
        ips.push(m.client_ip);
        forwarded.push(m.forwarded_for.as_deref());
        agents.push(m.user_agent.as_deref());
        keys.push(&m.submission_key[..]);
        token_hashes.push(&token_hash[..]);
        callbacks_after.push(m.callback_after.map(CallbackAfter::at));
    }
    let inserted: HashMap<Vec<u8>, i64> = sqlx::query!(
        r#"INSERT INTO leave_message (channel_id, user_id, user_name, phone_no, phone_digits,
                                      message, client_ip, forwarded_for, user_agent,
                                      submission_key, callback_after, due_at)
           -- now() is the transaction's start, which received_at defaults to: due_at is
           -- received_at, or callback_after when later (greatest ignores a NULL).
           SELECT i.channel_id, i.user_id, i.user_name, i.phone_no, i.phone_digits, i.message,
                  i.client_ip, i.forwarded_for, i.user_agent, i.submission_key,
                  i.callback_after, greatest(now(), i.callback_after)
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::text[], $7::inet[], $8::text[], $9::text[], $10::bytea[],
                       $11::bytea[], $12::timestamptz[])
                AS i(channel_id, user_id, user_name, phone_no, phone_digits, message,
                     client_ip, forwarded_for, user_agent, submission_key, token_hash,
                     callback_after)
           WHERE EXISTS (SELECT FROM visitor_token t
                         JOIN web_channel c ON c.id = t.channel_id AND c.enabled
                         WHERE t.channel_id = i.channel_id AND t.user_id = i.user_id
                           AND t.token_hash = i.token_hash AND t.expires_at > now())
           -- Key order: concurrent batches take unique-index locks in one order, so two
           -- batches holding the same resubmission cannot deadlock.
           ORDER BY i.submission_key
           ON CONFLICT (submission_key) DO NOTHING
           RETURNING id, submission_key"#,
        &channel_ids,
        &user_ids as &[&str],
        &user_names as &[&str],
        &phones as &[&str],
        &digits as &[&str],
        &texts as &[&str],
        &ips as &[IpAddr],
        &forwarded as &[Option<&str>],
        &agents as &[Option<&str>],
        &keys as &[&[u8]],
        &token_hashes as &[&[u8]],
        &callbacks_after as &[Option<DateTime<Utc>>],
    )
    .fetch_all(&mut *connection)
    .await?
    .into_iter()
    .map(|r| (r.submission_key, r.id))
    .collect();

    // A row not written was either stored before (a resubmission, found by its key: ON
    // CONFLICT waited for any writer of the same key to finish) or refused for its token.
    // Asking for the key afterwards says which, whatever the token's state is by then.
    let missing: Vec<&[u8]> = keys
        .iter()
        .copied()
        .filter(|key| !inserted.contains_key(*key))
        .collect();
    let stored_before: HashSet<Vec<u8>> = if missing.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar!(
            "SELECT submission_key FROM leave_message WHERE submission_key = ANY($1)",
            &missing as &[&[u8]],
        )
        .fetch_all(&mut *connection)
        .await?
        .into_iter()
        .collect()
    };

    // A key repeated within the batch is inserted once; its first row reports the new id.
    let mut reported = HashSet::new();
    Ok(keys
        .iter()
        .map(|key| match inserted.get(*key) {
            Some(id) if reported.insert(*id) => Outcome::Stored(Stored::New(*id)),
            Some(_) => Outcome::Stored(Stored::AlreadyStored),
            None if stored_before.contains(*key) => Outcome::Stored(Stored::AlreadyStored),
            None => Outcome::TokenNoLongerValid,
        })
        .collect())
}

impl Store {
    /// Deletes processed messages received before `days` days ago; returns how many.
    pub async fn purge_processed_older_than(&self, days: u32) -> Result<u64, StoreError> {
        let done = sqlx::query!(
            "DELETE FROM leave_message
         WHERE status = 'processed' AND received_at < now() - make_interval(days => $1)",
            i32::try_from(days).unwrap_or(i32::MAX),
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes every message left with this phone number (any formatting); returns how many.
    pub async fn erase_phone(&self, phone: &PhoneNo) -> Result<u64, StoreError> {
        // With the deletion, a message.erased event (ids only) for each subscribed endpoint;
        // a trigger removes the data of those messages' earlier events.
        let erased = sqlx::query_scalar!(
            r#"WITH gone AS (
                   DELETE FROM leave_message WHERE phone_digits = $1 RETURNING id, channel_id
               ), written AS (
                   INSERT INTO outbox_event (type, message_id, channel_id, at)
                   SELECT 'message.erased', g.id, g.channel_id, now() FROM gone g
                   WHERE EXISTS (SELECT 1 FROM webhook_endpoint w
                                 WHERE webhook_endpoint_wants(w, 'message.erased', g.channel_id))
                   ORDER BY g.id
                   RETURNING id, type, message_id, channel_id
               ), queued AS (
                   INSERT INTO webhook_delivery (endpoint_id, event_id, message_id)
                   SELECT w.id, e.id, e.message_id
                   FROM written e JOIN webhook_endpoint w
                     ON webhook_endpoint_wants(w, e.type, e.channel_id)
                   RETURNING 1
               )
               SELECT count(*) AS "erased!" FROM gone"#,
            phone.digits()
        )
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(erased).unwrap_or(0))
    }
}
