//! A message's history: when it was stored, then every row of `leave_message_event`.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::MessageId;

/// One entry of a message's history, oldest first. The first is `stored` (no agent); each
/// other is one `leave_message_event` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// The agent who made the change (for a release because an agent was disabled, that
    /// agent); `None` for `stored`.
    pub agent: Option<String>,
    /// stored, claim, assign, release, attempt or process.
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub assigned_to: Option<String>,
    pub result: Option<String>,
    pub outcome: Option<String>,
    pub note: Option<String>,
    pub reason: Option<String>,
}

impl Store {
    /// The message's history, oldest first; `None` if there is no such message. One
    /// statement: the `stored` entry and the events come from the same snapshot.
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn history(&self, id: MessageId) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        let entries = self
            .run_retrying(move |pool| async move {
                sqlx::query_as!(
                    HistoryEntry,
                    r#"SELECT at AS "at!", agent, action AS "action!", from_status,
                          to_status AS "to_status!", assigned_to, result, outcome, note, reason
                   FROM (
                       SELECT 0::bigint AS seq, received_at AS at, NULL::text AS agent,
                              'stored' AS action, NULL::text AS from_status,
                              'pending' AS to_status, NULL::text AS assigned_to,
                              NULL::text AS result, NULL::text AS outcome, NULL::text AS note,
                              NULL::text AS reason
                       FROM leave_message WHERE id = $1
                       UNION ALL
                       SELECT e.id, e.at, e.agent, e.action, e.from_status, e.to_status,
                              e.assigned_to, e.result, e.outcome, e.note, e.reason
                       FROM leave_message_event e WHERE e.message_id = $1
                   ) h
                   ORDER BY seq"#,
                    id.get()
                )
                .fetch_all(&pool)
                .await
            })
            .await?;
        // Events go with their message (ON DELETE CASCADE): no `stored` row, no history.
        Ok((!entries.is_empty()).then_some(entries))
    }
}
