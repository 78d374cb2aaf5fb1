//! Reading messages: the filtered list (keyset pages), one by id, the export stream, and what
//! the live stream reads back.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{MessageRow, Store, StoreError};
use crate::domain::{AgentName, ChannelId, MessageId, PhoneNo, Status};

/// Filters of the list and the CSV export; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub channel_id: Option<ChannelId>,
    /// Matched on the phone number's digits.
    pub phone: Option<PhoneNo>,
    pub agent: Option<AgentName>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `Some(true)`: pending and due now; `Some(false)`: every other message.
    pub due: Option<bool>,
    /// `Some(true)`: not processed and past its service level; `Some(false)`: every other.
    pub overdue: Option<bool>,
}

/// A position in list order, `(received_at, id)`: the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub received_at: DateTime<Utc>,
    pub id: i64,
}

impl Position {
    pub fn of(row: &MessageRow) -> Position {
        Position {
            received_at: row.received_at,
            id: row.id,
        }
    }
}

impl Store {
    /// Up to `limit` messages matching `filter`, oldest first, after `after`.
    #[tracing::instrument(skip_all)]
    pub async fn list(
        &self,
        filter: Filter,
        after: Option<Position>,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.run_retrying(move |pool| {
            let filter = filter.clone();
            async move {
                let mut tx = custom_plans(&pool).await?;
                let page = query_filtered!(
                    filter,
                    "AND ($9::timestamptz IS NULL OR (m.received_at, m.id) > ($9, $10))
         ORDER BY m.received_at, m.id
         LIMIT $11",
                    after.map(|p| p.received_at),
                    after.map_or(0, |p| p.id),
                    limit,
                )
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(page)
            }
        })
        .await
    }

    pub async fn message(&self, id: MessageId) -> Result<Option<MessageRow>, StoreError> {
        self.run_retrying(move |pool| async move {
            query_message!(
                "SELECT",
                "FROM leave_message m JOIN web_channel c ON c.id = m.channel_id WHERE m.id = $1",
                id.get()
            )
            .fetch_optional(&pool)
            .await
        })
        .await
    }

    /// Several messages by id, in list order (for the live stream).
    pub async fn messages_by_ids(&self, ids: Vec<i64>) -> Result<Vec<MessageRow>, StoreError> {
        self.run_retrying(move |pool| {
            let ids = ids.clone();
            async move {
                query_message!(
                    "SELECT",
                    "FROM leave_message m JOIN web_channel c ON c.id = m.channel_id
                     WHERE m.id = ANY($1) ORDER BY m.received_at, m.id",
                    &ids
                )
                .fetch_all(&pool)
                .await
            }
        })
        .await
    }

    /// The highest message id stored so far, if any.
    pub async fn newest_message_id(&self) -> Result<Option<i64>, StoreError> {
        self.run_retrying(|pool| async move {
            sqlx::query_scalar!("SELECT max(id) FROM leave_message")
                .fetch_one(&pool)
                .await
        })
        .await
    }

    /// Messages with an id above `after`, in id order (replayed to streams after a
    /// reconnection).
    pub async fn messages_stored_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.run_retrying(move |pool| async move {
            query_message!(
                "SELECT",
                "FROM leave_message m JOIN web_channel c ON c.id = m.channel_id
                 WHERE m.id > $1 ORDER BY m.id LIMIT $2",
                after,
                limit
            )
            .fetch_all(&pool)
            .await
        })
        .await
    }
}

/// A read transaction whose statements are planned with their actual parameters, so optional
/// filters (`$1 IS NULL OR …`) fold away and the partial queue indexes are used. (A
/// `QueryBuilder` that leaves absent filters out would get there too, but loses the
/// compile-time check of the SQL.)
pub(super) async fn custom_plans(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
