//! The agent interface's JSON for a message, made from the store's row. Its serde derive is
//! the one list of the fields: the JSON, the CSV header and the CSV cells all follow it.

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
        }
    }
}
