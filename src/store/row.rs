//! A `leave_message` row as the store reads it, and the query macros that read it. The API's
//! JSON types are made from [`MessageRow`] by the faces: a column rename changes this file,
//! not the API.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A message as stored, with what agents did to it. Also read back from an outbox event's
/// data (JSON with these field names).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
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
    /// The earliest time the visitor asked to be called, if they did.
    pub callback_after: Option<DateTime<Utc>>,
    /// When the message should next be called.
    pub due_at: DateTime<Utc>,
    /// `due_at` + the channel's service level (`sla_minutes`).
    pub overdue_at: DateTime<Utc>,
    /// Not processed, and `overdue_at` has passed (as of the statement that read the row).
    pub overdue: bool,
    /// Call attempts recorded so far.
    pub attempts: i16,
    /// The channel's `max_attempts`.
    pub max_attempts: i16,
}

/// `query_as!(MessageRow, …)` with the row's columns between `$before` and the rest. The
/// columns are read from `m` (the message, or a CTE of `leave_message` rows) and `c` (its
/// `web_channel`): the rest names both, e.g.
/// `FROM leave_message m JOIN web_channel c ON c.id = m.channel_id`.
macro_rules! query_message {
    ($before:literal, $after:literal $(+ $more:literal)* $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::store::MessageRow,
            $before
                + r#" m.id AS "id!", m.channel_id AS "channel_id!", m.user_id AS "user_id!",
                    m.user_name AS "user_name!", m.phone_no AS "phone_no!",
                    m.message AS "leave_message!", host(m.client_ip) AS "client_ip!",
                    m.user_agent, m.received_at AS "received_at!", m.status AS "status!",
                    m.assigned_to, m.assigned_at, m.processed_at, m.outcome, m.note,
                    m.callback_after, COALESCE(m.due_at, m.received_at) AS "due_at!",
                    COALESCE(m.due_at, m.received_at) + make_interval(mins => c.sla_minutes)
                        AS "overdue_at!",
                    (m.status <> 'processed'
                     AND m.due_at <= now() - make_interval(mins => c.sla_minutes)) AS "overdue!",
                    m.attempts AS "attempts!", c.max_attempts AS "max_attempts!" "#
                + $after $(+ $more)*
            $(, $arg)*
        )
    };
}

/// The messages matching `$filter` (a [`super::listing::Filter`], bound as `$1`-`$8`),
/// followed by `$tail` and its arguments; the list and the export share it.
///
/// `due` and `overdue` are each written as two conditions, one per value, so that with the
/// parameters known (custom plans, see `listing::custom_plans`) all but one fold away. Overdue
/// is `due_at <= now() - sla` rather than `due_at + sla <= now()`: per channel, a range of
/// `leave_message_open_due_idx`. "Due now" is written over `coalesce(due_at, received_at)`
/// (the same for a pending message, whose `due_at` is never NULL) so that it is not an index
/// condition: processed messages stored before the call-attempts migration have no `due_at`,
/// which makes `due_at <= now()` look a hundred times rarer among pending messages than it is,
/// and the planner would then read and sort every due message (88 ms for 80,000 at 10 million
/// rows) instead of walking the open messages in list order until the page is full (0.2 ms).
macro_rules! query_filtered {
    ($filter:expr, $tail:literal $(, $arg:expr)* $(,)?) => {
        query_message!(
            "SELECT",
            "FROM leave_message m JOIN web_channel c ON c.id = m.channel_id
             WHERE ($1::text IS NULL OR m.status = $1)
               AND ($2::uuid IS NULL OR m.channel_id = $2)
               AND ($3::text IS NULL OR m.phone_digits = $3)
               AND ($4::text IS NULL OR m.assigned_to = $4)
               AND ($5::timestamptz IS NULL OR m.received_at >= $5)
               AND ($6::timestamptz IS NULL OR m.received_at < $6)
               AND ($7::boolean IS NOT TRUE
                    OR (m.status = 'pending' AND coalesce(m.due_at, m.received_at) <= now()))
               AND ($7::boolean IS NOT FALSE OR m.status <> 'pending' OR m.due_at > now())
               AND ($8::boolean IS NOT TRUE
                    OR (m.status <> 'processed'
                        AND m.due_at <= now() - make_interval(mins => c.sla_minutes)))
               AND ($8::boolean IS NOT FALSE OR m.status = 'processed'
                    OR m.due_at > now() - make_interval(mins => c.sla_minutes)) "
                + $tail,
            $filter.status.map(|s| s.as_str()),
            $filter.channel_id.map(|c| c.as_uuid()),
            $filter.phone.as_ref().map($crate::domain::PhoneNo::digits),
            $filter.agent.as_ref().map($crate::domain::AgentName::as_str),
            $filter.from,
            $filter.to,
            $filter.due,
            $filter.overdue
            $(, $arg)*
        )
    };
}
