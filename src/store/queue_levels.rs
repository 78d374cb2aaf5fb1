//! How much of each channel's queue is waiting: what `/metrics` reports per channel.

use super::{Store, StoreError};
use crate::domain::ChannelId;

/// One channel's queue right now (CONTRACT §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueLevel {
    pub channel: ChannelId,
    /// Pending messages whose due time has come.
    pub due: i64,
    /// Messages not processed whose due time + the channel's service level has passed
    /// (assigned ones included).
    pub overdue: i64,
    /// Seconds since the earliest due time among the due messages; 0 when none is due.
    pub oldest_due_age_seconds: f64,
}

impl Store {
    /// Every channel's queue level (disabled channels too: their messages still wait for a
    /// call), in one statement. It reads only messages not processed and already due, through
    /// `leave_message_open_due_idx`: its cost grows with the backlog, not with the table.
    pub async fn queue_levels(&self) -> Result<Vec<QueueLevel>, StoreError> {
        let rows = self
            .run_retrying(|pool| async move {
                sqlx::query!(
                    r#"SELECT c.id AS "channel_id!",
                              count(*) FILTER (WHERE m.status = 'pending') AS "due!",
                              count(*) FILTER (WHERE m.due_at
                                               <= now() - make_interval(mins => c.sla_minutes))
                                  AS "overdue!",
                              coalesce(extract(epoch FROM now() - min(m.due_at)
                                                      FILTER (WHERE m.status = 'pending')),
                                       0)::float8 AS "oldest_due_age_seconds!"
                       FROM web_channel c
                       LEFT JOIN leave_message m
                              ON m.channel_id = c.id AND m.status <> 'processed'
                             AND m.due_at <= now()
                       GROUP BY c.id
                       ORDER BY c.id"#
                )
                .fetch_all(&pool)
                .await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| QueueLevel {
                channel: ChannelId::from_uuid(r.channel_id),
                due: r.due,
                overdue: r.overdue,
                oldest_due_age_seconds: r.oldest_due_age_seconds,
            })
            .collect())
    }
}
