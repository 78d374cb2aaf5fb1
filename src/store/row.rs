//! A `leave_message` row as the store reads it, and the query macros that read it. The API's
//! JSON types are made from [`MessageRow`] by the faces: a column rename changes this file,
//! not the API.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A message as stored, with what agents did to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub channel_id: Uuid,
    pub user_id: String,
    pub user_name: String,
    pub phone_no: String,
    pub leave_message: String,
    /// The client address, as text (`host(client_ip)`).
    pub client_ip: String,
    pub user_agent: Option<String>,
    pub received_at: DateTime<Utc>,
    pub status: String,
    pub assigned_to: Option<String>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub note: Option<String>,
}

/// `query_as!(MessageRow, …)` with the row's columns between `$before` and the rest.
macro_rules! query_message {
    ($before:literal, $after:literal $(+ $more:literal)* $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::store::MessageRow,
            $before
                + r#" id AS "id!", channel_id AS "channel_id!", user_id AS "user_id!",
                    user_name AS "user_name!", phone_no AS "phone_no!",
                    message AS "leave_message!", host(client_ip) AS "client_ip!", user_agent,
                    received_at AS "received_at!", status AS "status!", assigned_to,
                    assigned_at, processed_at, outcome, note "#
                + $after $(+ $more)*
            $(, $arg)*
        )
    };
}

/// The messages matching `$filter` (a [`super::listing::Filter`], bound as `$1`-`$6`),
/// followed by `$tail` and its arguments; the list and the export share it.
macro_rules! query_filtered {
    ($filter:expr, $tail:literal $(, $arg:expr)* $(,)?) => {
        query_message!(
            "SELECT",
            "FROM leave_message
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::uuid IS NULL OR channel_id = $2)
               AND ($3::text IS NULL OR phone_digits = $3)
               AND ($4::text IS NULL OR assigned_to = $4)
               AND ($5::timestamptz IS NULL OR received_at >= $5)
               AND ($6::timestamptz IS NULL OR received_at < $6) "
                + $tail,
            $filter.status.map(|s| s.as_str()),
            $filter.channel_id.map(|c| c.as_uuid()),
            $filter.phone.as_ref().map($crate::domain::PhoneNo::digits),
            $filter.agent.as_ref().map($crate::domain::AgentName::as_str),
            $filter.from,
            $filter.to
            $(, $arg)*
        )
    };
}
