//! Webhook endpoints and their deliveries (CONTRACT §7.1). The events themselves are written by
//! the database, in the statement that changes a message (see the outbox migration); here the
//! dispatchers take what is due, one endpoint at a time, and record how each try went.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{MessageRow, Store, StoreError};
use crate::credentials::WebhookSecret;
use crate::domain::{ChannelId, DeliveryStatus, EndpointUrl, EventId, EventTypes};

pub struct NewEndpoint<'a> {
    pub url: &'a EndpointUrl,
    /// Only this channel's events; `None`: every channel's.
    pub channel: Option<ChannelId>,
    /// Only these types; empty: every type.
    pub events: &'a EventTypes,
    pub secret: &'a WebhookSecret,
}

/// What subscribing an endpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    Added(EndpointRow),
    /// The channel it names does not exist (the endpoint was not added).
    NoSuchChannel,
}

/// An endpoint as `webhook list` shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub id: Uuid,
    pub url: String,
    pub channel_id: Option<Uuid>,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub pending: i64,
    pub failed: i64,
}

/// One event to send to one endpoint, taken by a dispatcher for one try.
#[derive(Clone)]
pub struct Delivery {
    pub endpoint_id: Uuid,
    pub event_id: i64,
    /// The `webhook-id`: the same on every try.
    pub uid: Uuid,
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub message_id: i64,
    pub channel_id: Uuid,
    /// The message after the change (`None` once erased or purged), and the attempt's
    /// details for `message.attempted`.
    pub message: Option<MessageRow>,
    pub attempt: Option<serde_json::Value>,
    pub url: String,
    pub secret: String,
    /// This try's number, from 1.
    pub tries: i32,
}

/// A delivery that gave up, as `webhook failed` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    pub endpoint_id: Uuid,
    pub event_id: i64,
    pub uid: Uuid,
    pub event_type: String,
    pub message_id: i64,
    pub at: DateTime<Utc>,
    pub tries: i32,
    pub last_error: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
}

/// One event to one endpoint, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The event's `webhook-id` (without `evt_`).
    pub uid: Uuid,
    pub event_type: String,
    pub message_id: i64,
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// pending, delivered or failed.
    pub status: String,
    pub tries: i32,
    pub last_error: Option<String>,
    /// When it may be tried (again); meaningful while pending.
    pub next_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub done_at: Option<DateTime<Utc>>,
}

/// What asking to send one delivery again did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redelivery {
    /// Queued again, as it is now.
    Queued(DeliveryRow),
    /// It is still pending: nothing to do.
    AlreadyPending,
    /// No such endpoint, or the event never went (or no longer goes) to it.
    NoSuchDelivery,
}

/// `query_as!(DeliveryRow, …)`: the delivery's columns from `d` (`webhook_delivery`) and `e`
/// (its `outbox_event`), then `$rest`, which names both.
macro_rules! query_delivery {
    ($before:literal, $rest:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            DeliveryRow,
            $before
                + r#" e.uid AS "uid!", e.type AS "event_type!", e.message_id AS "message_id!",
                      e.at AS "at!", d.status AS "status!", d.tries AS "tries!", d.last_error,
                      d.next_at AS "next_at!", d.done_at "#
                + $rest
            $(, $arg)*
        )
    };
}

/// An event's data: the message's row fields, as the outbox migration's `outbox_message_data`
/// writes them, and the attempt for `message.attempted`.
#[derive(serde::Deserialize)]
struct EventData {
    #[serde(flatten)]
    message: MessageRow,
    attempt: Option<serde_json::Value>,
}

pub(super) fn message_of(
    data: serde_json::Value,
) -> Result<(MessageRow, Option<serde_json::Value>), StoreError> {
    let data: EventData = serde_json::from_value(data)
        .map_err(|e| StoreError::Task(format!("an outbox event's data does not read back: {e}")))?;
    Ok((data.message, data.attempt))
}

/// What waits in the outbox right now (CONTRACT §7.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxLevel {
    /// Deliveries (webhooks and e-mails) waiting to be sent or tried again.
    pub pending: i64,
    /// Seconds since the longest-waiting of them was queued; 0 when none waits.
    pub oldest_pending_age_seconds: f64,
}

impl Store {
    /// How many deliveries (webhooks and e-mails) wait, and for how long the oldest has: one
    /// statement over the pending ones only.
    pub async fn outbox_level(&self) -> Result<OutboxLevel, StoreError> {
        let row = sqlx::query!(
            r#"SELECT count(*) AS "pending!",
                      coalesce(extract(epoch FROM now() - min(since)), 0)::float8
                          AS "oldest_pending_age_seconds!"
               FROM (SELECT since FROM webhook_delivery WHERE status = 'pending'
                     UNION ALL
                     SELECT since FROM email_delivery WHERE status = 'pending') waiting"#
        )
        .fetch_one(self.pool())
        .await?;
        Ok(OutboxLevel {
            pending: row.pending,
            oldest_pending_age_seconds: row.oldest_pending_age_seconds,
        })
    }

    /// Subscribes an endpoint; it gets the events committed from now on. A channel that does
    /// not exist is refused by the table's foreign key, in the same statement.
    pub async fn create_webhook(&self, new: &NewEndpoint<'_>) -> Result<Subscribed, StoreError> {
        let id = Uuid::new_v4();
        let url = new.url.as_str().to_owned();
        let channel = new.channel.map(|c| c.as_uuid());
        let events = new.events.to_strings();
        let secret = new.secret.expose().to_owned();
        let added = self
            .run(move |pool| async move {
                sqlx::query_as!(
                    EndpointRow,
                    r#"INSERT INTO webhook_endpoint (id, url, channel_id, events, secret)
                       VALUES ($1, $2, $3, $4, $5)
                       RETURNING id, url, channel_id, events, created_at,
                                 0::bigint AS "pending!", 0::bigint AS "failed!""#,
                    id,
                    url,
                    channel,
                    &events,
                    secret,
                )
                .fetch_one(&pool)
                .await
            })
            .await;
        match added {
            Ok(row) => Ok(Subscribed::Added(row)),
            Err(StoreError::Database(e))
                if e.as_database_error()
                    .and_then(|d| d.constraint())
                    .is_some_and(|c| c == "webhook_endpoint_channel_id_fkey") =>
            {
                Ok(Subscribed::NoSuchChannel)
            }
            Err(e) => Err(e),
        }
    }

    /// Every endpoint, oldest first, with its pending and failed deliveries.
    pub async fn webhooks(&self) -> Result<Vec<EndpointRow>, StoreError> {
        self.run_retrying(|pool| async move {
            sqlx::query_as!(
                EndpointRow,
                r#"SELECT w.id, w.url, w.channel_id, w.events, w.created_at,
                          (SELECT count(*) FROM webhook_delivery d
                           WHERE d.endpoint_id = w.id AND d.status = 'pending') AS "pending!",
                          (SELECT count(*) FROM webhook_delivery d
                           WHERE d.endpoint_id = w.id AND d.status = 'failed') AS "failed!"
                   FROM webhook_endpoint w ORDER BY w.created_at, w.id"#
            )
            .fetch_all(&pool)
            .await
        })
        .await
    }

    /// The ids of every endpoint: each gets a dispatcher of its own.
    pub async fn webhook_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar!("SELECT id FROM webhook_endpoint ORDER BY id")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Unsubscribes an endpoint and drops its deliveries; false if there was none.
    pub async fn remove_webhook(&self, id: Uuid) -> Result<bool, StoreError> {
        self.run(move |pool| async move {
            let done = sqlx::query!("DELETE FROM webhook_endpoint WHERE id = $1", id)
                .execute(&pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// One endpoint's deliveries, of one status or all, newest event first, at most `limit`;
    /// `None` if there is no such endpoint. One statement per status, so that each can use
    /// that status's partial index (a failed delivery is found among a week of delivered ones
    /// without reading them).
    pub async fn deliveries(
        &self,
        endpoint: Uuid,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Option<Vec<DeliveryRow>>, StoreError> {
        let rows = self
            .run_retrying(move |pool| async move {
                let exists = sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM webhook_endpoint WHERE id = $1) AS "exists!""#,
                    endpoint
                )
                .fetch_one(&pool)
                .await?;
                if !exists {
                    return Ok(None);
                }
                let rows = match status {
                    None => {
                        query_delivery!(
                            "SELECT",
                            "FROM webhook_delivery d JOIN outbox_event e ON e.id = d.event_id
                             WHERE d.endpoint_id = $1
                             ORDER BY d.event_id DESC LIMIT $2",
                            endpoint,
                            limit
                        )
                        .fetch_all(&pool)
                        .await?
                    }
                    Some(DeliveryStatus::Pending) => {
                        query_delivery!(
                            "SELECT",
                            "FROM webhook_delivery d JOIN outbox_event e ON e.id = d.event_id
                             WHERE d.endpoint_id = $1 AND d.status = 'pending'
                             ORDER BY d.event_id DESC LIMIT $2",
                            endpoint,
                            limit
                        )
                        .fetch_all(&pool)
                        .await?
                    }
                    Some(DeliveryStatus::Delivered) => {
                        query_delivery!(
                            "SELECT",
                            "FROM webhook_delivery d JOIN outbox_event e ON e.id = d.event_id
                             WHERE d.endpoint_id = $1 AND d.status = 'delivered'
                             ORDER BY d.event_id DESC LIMIT $2",
                            endpoint,
                            limit
                        )
                        .fetch_all(&pool)
                        .await?
                    }
                    Some(DeliveryStatus::Failed) => {
                        query_delivery!(
                            "SELECT",
                            "FROM webhook_delivery d JOIN outbox_event e ON e.id = d.event_id
                             WHERE d.endpoint_id = $1 AND d.status = 'failed'
                             ORDER BY d.event_id DESC LIMIT $2",
                            endpoint,
                            limit
                        )
                        .fetch_all(&pool)
                        .await?
                    }
                };
                Ok(Some(rows))
            })
            .await?;
        Ok(rows)
    }

    /// Queues one event to one endpoint again, delivered or failed, for a full `max_age` from
    /// now (as `webhook redeliver EVENT --endpoint ID` does).
    pub async fn redeliver_one(
        &self,
        endpoint: Uuid,
        event: EventId,
    ) -> Result<Redelivery, StoreError> {
        let uid = event.as_uuid();
        self.run(move |pool| async move {
            let queued = query_delivery!(
                "UPDATE webhook_delivery d
                 SET status = 'pending', next_at = now(), done_at = NULL, tries = 0, since = now()
                 FROM outbox_event e
                 WHERE e.id = d.event_id AND e.uid = $2 AND d.endpoint_id = $1
                   AND d.status <> 'pending'
                 RETURNING",
                "",
                endpoint,
                uid
            )
            .fetch_optional(&pool)
            .await?;
            if let Some(row) = queued {
                return Ok(Redelivery::Queued(row));
            }
            // Deliveries are written with their event and only ever deleted: one that exists
            // now existed at the UPDATE, which left it alone because it was pending.
            let exists = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM webhook_delivery d
                                  JOIN outbox_event e ON e.id = d.event_id
                                  WHERE d.endpoint_id = $1 AND e.uid = $2) AS "exists!""#,
                endpoint,
                uid
            )
            .fetch_one(&pool)
            .await?;
            Ok(if exists {
                Redelivery::AlreadyPending
            } else {
                Redelivery::NoSuchDelivery
            })
        })
        .await
    }

    /// Takes up to `limit` of one endpoint's deliveries that are due, for one try each: they
    /// are not due again until `lease` has passed, so no other dispatcher takes them meanwhile
    /// (and if this one dies mid-try, another takes them after it). A message's later event
    /// waits while an earlier one to the same endpoint is pending.
    pub async fn take_deliveries(
        &self,
        endpoint: Uuid,
        limit: i64,
        lease: std::time::Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let lease_secs = lease.as_secs_f64();
        let mut tx = dispatcher_transaction(self.pool()).await?;
        let rows = sqlx::query!(
            r#"WITH due AS (
                   SELECT d.endpoint_id, d.event_id
                   FROM webhook_delivery d
                   WHERE d.endpoint_id = $1 AND d.status = 'pending' AND d.next_at <= now()
                     AND NOT EXISTS (SELECT 1 FROM webhook_delivery p
                                     WHERE p.endpoint_id = d.endpoint_id
                                       AND p.message_id = d.message_id
                                       AND p.status = 'pending' AND p.event_id < d.event_id)
                   ORDER BY d.next_at, d.event_id
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED
               ), taken AS (
                   UPDATE webhook_delivery d
                   SET next_at = clock_timestamp() + make_interval(secs => $3), tries = d.tries + 1
                   FROM due
                   WHERE d.endpoint_id = due.endpoint_id AND d.event_id = due.event_id
                   RETURNING d.endpoint_id, d.event_id, d.tries
               )
               SELECT t.endpoint_id AS "endpoint_id!", t.event_id AS "event_id!",
                      t.tries AS "tries!", e.uid, e.type AS event_type, e.at, e.data,
                      e.message_id, e.channel_id,
                      w.url, w.secret
               FROM taken t
               JOIN outbox_event e ON e.id = t.event_id
               JOIN webhook_endpoint w ON w.id = t.endpoint_id
               ORDER BY t.event_id"#,
            endpoint,
            limit,
            lease_secs,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| {
                let (message, attempt) = match r.data {
                    Some(data) => {
                        let (message, attempt) = message_of(data)?;
                        (Some(message), attempt)
                    }
                    None => (None, None),
                };
                Ok(Delivery {
                    endpoint_id: r.endpoint_id,
                    event_id: r.event_id,
                    uid: r.uid,
                    event_type: r.event_type,
                    at: r.at,
                    message_id: r.message_id,
                    channel_id: r.channel_id,
                    message,
                    attempt,
                    url: r.url,
                    secret: r.secret,
                    tries: r.tries,
                })
            })
            .collect()
    }

    /// The endpoint answered 2xx to these events' tries: one statement for a batch.
    pub async fn delivered(&self, endpoint: Uuid, events: &[i64]) -> Result<(), StoreError> {
        let mut tx = dispatcher_transaction(self.pool()).await?;
        sqlx::query!(
            "UPDATE webhook_delivery
             SET status = 'delivered', done_at = now(), last_error = NULL
             WHERE endpoint_id = $1 AND event_id = ANY($2) AND status = 'pending'",
            endpoint,
            events
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A try failed: due again after `retry_in`, or failed for good once the delivery has
    /// waited `max_age` since it was queued (the last try is made at that age). Returns true if
    /// it gave up.
    pub async fn retry_later(
        &self,
        endpoint: Uuid,
        event: i64,
        error: &str,
        retry_in: std::time::Duration,
        max_age: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut tx = dispatcher_transaction(self.pool()).await?;
        let gave_up = sqlx::query_scalar!(
            r#"UPDATE webhook_delivery d
               SET last_error = left($3, 500),
                   status = CASE WHEN now() >= d.since + make_interval(secs => $5)
                                 THEN 'failed' ELSE 'pending' END,
                   done_at = CASE WHEN now() >= d.since + make_interval(secs => $5)
                                  THEN now() END,
                   next_at = least(now() + make_interval(secs => $4),
                                   d.since + make_interval(secs => $5))
               WHERE d.endpoint_id = $1 AND d.event_id = $2 AND d.status = 'pending'
               RETURNING d.status = 'failed' AS "failed!""#,
            endpoint,
            event,
            error,
            retry_in.as_secs_f64(),
            max_age.as_secs_f64(),
        )
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(gave_up.unwrap_or(false))
    }

    /// Deletes the events older than `older_than` that went through to every endpoint (none
    /// pending or failed) and whose e-mail is done (delivered, dropped or given up: e-mail has
    /// no redeliver), with their deliveries; returns how many events.
    pub async fn prune_outbox(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
        let done = sqlx::query!(
            "DELETE FROM outbox_event e
             WHERE e.at < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM webhook_delivery d
                               WHERE d.event_id = e.id AND d.status <> 'delivered')
               AND NOT EXISTS (SELECT 1 FROM email_delivery m
                               WHERE m.event_id = e.id AND m.status = 'pending')",
            older_than.as_secs_f64()
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Deliveries that gave up, newest first; of one endpoint or all.
    pub async fn failed_deliveries(
        &self,
        endpoint: Option<Uuid>,
    ) -> Result<Vec<FailedDelivery>, StoreError> {
        Ok(sqlx::query_as!(
            FailedDelivery,
            r#"SELECT d.endpoint_id, d.event_id, e.uid, e.type AS event_type, e.message_id, e.at,
                      d.tries, d.last_error, d.done_at AS failed_at
               FROM webhook_delivery d JOIN outbox_event e ON e.id = d.event_id
               WHERE d.status = 'failed' AND ($1::uuid IS NULL OR d.endpoint_id = $1)
               ORDER BY d.done_at DESC, d.event_id DESC"#,
            endpoint
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Queues a failed (or delivered) event again, to one endpoint or to every endpoint it
    /// went to; returns how many deliveries were queued. It gets a full `max_age` from now.
    pub async fn redeliver(
        &self,
        event: EventId,
        endpoint: Option<Uuid>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query!(
            "UPDATE webhook_delivery d
             SET status = 'pending', next_at = now(), done_at = NULL, tries = 0, since = now()
             FROM outbox_event e
             WHERE e.id = d.event_id AND e.uid = $1 AND d.status <> 'pending'
               AND ($2::uuid IS NULL OR d.endpoint_id = $2)",
            event.as_uuid(),
            endpoint
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

/// A transaction for the dispatchers' own bookkeeping (leases and results), committed without
/// waiting for the disk: only a crash of PostgreSQL can lose such a commit, and then a
/// delivery is sent again, which the contract allows after a crash (receivers deduplicate on
/// `webhook-id`). Waiting for the disk here would cost a flush per delivery, which intake's
/// commits would queue behind.
async fn dispatcher_transaction(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
