//! The leave_message table.

use std::net::IpAddr;

use sqlx::PgPool;

use crate::domain::{ChannelId, MessageText, PhoneNo};

/// A validated message, ready to store.
pub struct NewMessage {
    pub channel_id: ChannelId,
    pub user_id: String,
    pub user_name: String,
    pub phone: PhoneNo,
    pub text: MessageText,
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

/// Inserts and commits one message. A row with the same submission key (same token, phone and
/// text) makes this a no-op that still counts as stored: the earlier row is committed.
#[tracing::instrument(skip_all, fields(channel = %new.channel_id))]
pub async fn insert(pool: &PgPool, new: &NewMessage) -> Result<Stored, sqlx::Error> {
    let id = sqlx::query_scalar!(
        "INSERT INTO leave_message (channel_id, user_id, user_name, phone_no, phone_digits,
                                    message, client_ip, forwarded_for, user_agent, submission_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (submission_key) DO NOTHING
         RETURNING id",
        new.channel_id.as_uuid(),
        new.user_id,
        new.user_name,
        new.phone.as_str(),
        new.phone.digits(),
        new.text.as_str(),
        new.client_ip as IpAddr,
        new.forwarded_for.as_deref(),
        new.user_agent.as_deref(),
        new.submission_key.as_slice(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(id.map_or(Stored::AlreadyStored, Stored::New))
}

/// Deletes processed messages received before `days` days ago; returns how many.
pub async fn purge_processed_older_than(pool: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM leave_message
         WHERE status = 'processed' AND received_at < now() - make_interval(days => $1)",
        i32::try_from(days).unwrap_or(i32::MAX),
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes every message left with this phone number (any formatting); returns how many.
pub async fn erase_phone(pool: &PgPool, phone: &PhoneNo) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM leave_message WHERE phone_digits = $1",
        phone.digits()
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
