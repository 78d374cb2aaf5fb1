//! The JSON of a message, made from the store's row: what agents get from the API, the export
//! and the live stream, and what webhooks carry. Its serde derive is the one list of the
//! fields: the JSON, the CSV header and the CSV cells all follow it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::store::MessageRow;

/// A message as agents see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: i64,
    pub channel_id: Uuid,
    pub user_id: String,
    pub user_name: String,
    pub phone_no: String,
    pub leave_message: String,
    pub client_ip: String,
    pub user_agent: Option<String>,
    pub received_at: DateTime<Utc>,
    #[schema(pattern = "^(pending|assigned|processed)$")]
    pub status: String,
    pub assigned_to: Option<String>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub note: Option<String>,
    /// The earliest time the visitor asked to be called ("do not call me before"), if given.
    pub callback_after: Option<DateTime<Utc>>,
    /// When the message should next be called: receivedAt, or callbackAfter when later; after
    /// an unsuccessful attempt, that attempt's time + the channel's retry minutes.
    pub due_at: DateTime<Utc>,
    /// dueAt + the channel's service level (SLA minutes).
    pub overdue_at: DateTime<Utc>,
    /// Not processed, and overdueAt has passed.
    pub overdue: bool,
    /// Call attempts recorded so far.
    #[schema(minimum = 0, maximum = 10)]
    pub attempts: i16,
    /// The channel's maximum number of attempts.
    #[schema(minimum = 1, maximum = 10)]
    pub max_attempts: i16,
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Message {
            id: row.id,
            channel_id: row.channel_id,
            user_id: row.user_id,
            user_name: row.user_name,
            phone_no: row.phone_no,
            leave_message: row.leave_message,
            client_ip: row.client_ip,
            user_agent: row.user_agent,
            received_at: row.received_at,
            status: row.status,
            assigned_to: row.assigned_to,
            assigned_at: row.assigned_at,
            processed_at: row.processed_at,
            outcome: row.outcome,
            note: row.note,
            callback_after: row.callback_after,
            due_at: row.due_at,
            overdue_at: row.overdue_at,
            overdue: row.overdue,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
        }
    }
}
