//! Webhook endpoints and their deliveries (CONTRACT §7.1). The events themselves are written by
//! the database, in the statement that changes a message (see the outbox migrations); here the
//! dispatchers take what is due, one endpoint at a time, and record how each try went.
//!
//! Two kinds of work wait for an endpoint. Stored messages: one `outbox_stored` row per intake
//! statement, which each endpoint goes through in transaction order from its own place
//! (`webhook_cursor`), a range at a time, the payloads built from the messages themselves
//! ([`Store::take_stored`], [`Store::stored_sent`]). Everything else, and a stored message
//! whose first try failed: an event row and a delivery row per endpoint, taken when due and
//! retried with backoff ([`Store::take_deliveries`]).

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
    /// Its event row; `None` for a message.stored sent from `outbox_stored` (a range of
    /// [`StoredRange`]), which has none unless its try fails.
    pub event_id: Option<i64>,
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

/// What one look at an endpoint's place in the stored messages found.
pub enum StoredStep {
    /// Messages to send: the dispatcher holds them until it calls [`Store::stored_sent`] or
    /// the lease runs out.
    Send(StoredRange),
    /// Its place moved on over messages it does not take (another channel's, say), and more
    /// lie past the range.
    Moved,
    /// Nothing (more) to send for now, or another dispatcher is sending this endpoint's
    /// messages.
    Nothing,
}

/// Stored messages taken for one endpoint: the range of `outbox_stored` below `upto`.
pub struct StoredRange {
    /// The lease: only its holder moves the endpoint's place on.
    pub lease: Uuid,
    /// The place the endpoint moves to once these are sent (or queued to retry).
    pub upto: i64,
    /// One message.stored each, in the order they were stored.
    pub deliveries: Vec<Delivery>,
}

/// A message.stored from a range whose try failed: it becomes an event and a delivery row.
pub struct StoredFailure<'a> {
    pub delivery: &'a Delivery,
    pub error: &'a str,
    /// When to try again.
    pub retry_in: std::time::Duration,
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
    /// statement over the pending ones only (for stored messages, those past each endpoint's
    /// place).
    pub async fn outbox_level(&self) -> Result<OutboxLevel, StoreError> {
        let row = sqlx::query!(
            r#"SELECT count(*) AS "pending!",
                      coalesce(extract(epoch FROM now() - min(since)), 0)::float8
                          AS "oldest_pending_age_seconds!"
               FROM (SELECT since FROM webhook_delivery WHERE status = 'pending'
                     UNION ALL
                     SELECT since FROM email_delivery WHERE status = 'pending'
                     UNION ALL
                     SELECT s.at FROM webhook_endpoint w
                     JOIN webhook_cursor k ON k.endpoint_id = w.id
                     JOIN outbox_stored s ON s.xid >= k.stored_upto
                     CROSS JOIN LATERAL unnest(s.channel_ids) AS u(channel_id)
                     WHERE webhook_endpoint_wants(w, 'message.stored', u.channel_id)) waiting"#
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
                           WHERE d.endpoint_id = w.id AND d.status = 'pending')
                          + (SELECT count(*) FROM webhook_cursor k
                             JOIN outbox_stored s ON s.xid >= k.stored_upto
                             CROSS JOIN LATERAL unnest(s.channel_ids) AS u(channel_id)
                             WHERE k.endpoint_id = w.id
                               AND webhook_endpoint_wants(w, 'message.stored', u.channel_id))
                            AS "pending!",
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
    /// `None` if there is no such endpoint. The stored messages sent from `outbox_stored`
    /// (kept as long as delivered events) are listed with them: delivered once the endpoint's
    /// place has passed them, with one try and no time of delivery (none is written per
    /// message), pending before that.
    pub async fn deliveries(
        &self,
        endpoint: Uuid,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> Result<Option<Vec<DeliveryRow>>, StoreError> {
        let status = status.map(|s| s.as_str());
        self.run_retrying(move |pool| async move {
            let exists = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM webhook_endpoint WHERE id = $1) AS "exists!""#,
                endpoint
            )
            .fetch_one(&pool)
            .await?;
            if !exists {
                return Ok(None);
            }
            let rows = sqlx::query_as!(
                DeliveryRow,
                r#"SELECT uid AS "uid!", event_type AS "event_type!", message_id AS "message_id!",
                          at AS "at!", status AS "status!", tries AS "tries!", last_error,
                          next_at AS "next_at!", done_at
                   FROM (SELECT e.uid, e.type AS event_type, e.message_id, e.at, d.status,
                                d.tries, d.last_error, d.next_at, d.done_at
                         FROM webhook_delivery d JOIN outbox_event e ON e.id = d.event_id
                         WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2)
                         UNION ALL
                         SELECT outbox_stored_uid(u.message_id), 'message.stored', u.message_id,
                                s.at, x.status, (x.status = 'delivered')::int, NULL, s.at, NULL
                         FROM webhook_endpoint w
                         JOIN webhook_cursor k ON k.endpoint_id = w.id
                         JOIN outbox_stored s ON s.xid >= k.stored_from
                         CROSS JOIN LATERAL unnest(s.message_ids, s.channel_ids)
                              AS u(message_id, channel_id)
                         CROSS JOIN LATERAL (SELECT CASE WHEN s.xid < k.stored_upto
                                                         THEN 'delivered' ELSE 'pending' END
                                                    AS status) x
                         WHERE w.id = $1 AND ($2::text IS NULL OR x.status = $2)
                           AND webhook_endpoint_wants(w, 'message.stored', u.channel_id)
                           -- Its try failed: it is listed from its delivery row.
                           AND NOT EXISTS (SELECT 1 FROM outbox_event e
                                           JOIN webhook_delivery d ON d.event_id = e.id
                                           WHERE e.uid = outbox_stored_uid(u.message_id)
                                             AND d.endpoint_id = w.id)) listed
                   ORDER BY at DESC, message_id DESC, event_type DESC
                   LIMIT $3"#,
                endpoint,
                status,
                limit
            )
            .fetch_all(&pool)
            .await?;
            Ok(Some(rows))
        })
        .await
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
            let mut tx = pool.begin().await?;
            if requeue_stored(&mut tx, uid, Some(endpoint)).await? == 1 {
                let row = query_delivery!(
                    "SELECT",
                    "FROM webhook_delivery d JOIN outbox_event e ON e.id = d.event_id
                     WHERE d.endpoint_id = $1 AND e.uid = $2",
                    endpoint,
                    uid
                )
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(Redelivery::Queued(row));
            }
            tx.commit().await?;
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
            // now existed at the UPDATE, which left it alone because it was pending. A stored
            // message past the endpoint's place is pending too.
            let exists = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM webhook_delivery d
                                  JOIN outbox_event e ON e.id = d.event_id
                                  WHERE d.endpoint_id = $1 AND e.uid = $2)
                       OR EXISTS (SELECT 1 FROM webhook_endpoint w
                                  JOIN webhook_cursor k ON k.endpoint_id = w.id
                                  JOIN outbox_stored s ON s.xid >= k.stored_upto
                                  CROSS JOIN LATERAL unnest(s.message_ids, s.channel_ids)
                                       AS u(message_id, channel_id)
                                  WHERE w.id = $1 AND u.message_id = outbox_stored_message($2)
                                    AND webhook_endpoint_wants(w, 'message.stored', u.channel_id))
                       AS "exists!""#,
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

    /// Looks past an endpoint's place in the stored messages: takes the next range (whole
    /// intake statements, from at least `rows` of them), only below the oldest transaction
    /// still running, so that no message can be committed behind the place later. The
    /// messages the endpoint takes are leased for `lease(count)` and returned to send; when it
    /// takes none, its place moves on at once.
    pub async fn take_stored(
        &self,
        endpoint: Uuid,
        rows: i64,
        lease: impl Fn(usize) -> std::time::Duration,
    ) -> Result<StoredStep, StoreError> {
        let mut tx = dispatcher_transaction(self.pool()).await?;
        let place = sqlx::query!(
            r#"SELECT k.stored_upto, w.url, w.secret, i.prefix,
                      pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS "horizon!"
               FROM webhook_cursor k
               JOIN webhook_endpoint w ON w.id = k.endpoint_id
               CROSS JOIN outbox_identity i
               WHERE k.endpoint_id = $1 AND (k.lease_until IS NULL OR k.lease_until < now())
               FOR UPDATE OF k SKIP LOCKED"#,
            endpoint
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(place) = place else {
            return Ok(StoredStep::Nothing);
        };
        let from = place.stored_upto;
        if place.horizon <= from {
            return Ok(StoredStep::Nothing);
        }
        // The range ends before the first transaction past `rows` rows (all of it when the
        // first transaction alone has that many), or at the horizon.
        let next = sqlx::query_scalar!(
            "SELECT xid FROM outbox_stored WHERE xid >= $1 AND xid < $2
             ORDER BY xid OFFSET $3 LIMIT 1",
            from,
            place.horizon,
            rows
        )
        .fetch_optional(&mut *tx)
        .await?;
        let upto = match next {
            Some(xid) if xid > from => xid,
            Some(xid) => xid + 1,
            None => place.horizon,
        };
        let found = sqlx::query!(
            r#"SELECT u.message_id AS "message_id!", u.channel_id AS "channel_id!", s.at
               FROM webhook_endpoint w
               JOIN outbox_stored s ON s.xid >= $2 AND s.xid < $3
               CROSS JOIN LATERAL unnest(s.message_ids, s.channel_ids) AS u(message_id, channel_id)
               WHERE w.id = $1 AND webhook_endpoint_wants(w, 'message.stored', u.channel_id)
               ORDER BY s.xid, u.message_id"#,
            endpoint,
            from,
            upto
        )
        .fetch_all(&mut *tx)
        .await?;
        if found.is_empty() {
            sqlx::query!(
                "UPDATE webhook_cursor SET stored_upto = $2 WHERE endpoint_id = $1",
                endpoint,
                upto
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            // More rows lie past the range: look again at once; otherwise it is all done.
            return Ok(if next.is_some() {
                StoredStep::Moved
            } else {
                StoredStep::Nothing
            });
        }
        let token = Uuid::new_v4();
        sqlx::query!(
            "UPDATE webhook_cursor
             SET lease = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
             WHERE endpoint_id = $1",
            endpoint,
            token,
            lease(found.len()).as_secs_f64()
        )
        .execute(&mut *tx)
        .await?;
        let ids: Vec<i64> = found.iter().map(|r| r.message_id).collect();
        let mut messages = as_stored(&mut tx, &ids).await?;
        tx.commit().await?;
        let deliveries = found
            .into_iter()
            .map(|r| {
                // Erased or purged since: only its ids are left to send.
                let message = messages.remove(&r.message_id);
                Delivery {
                    endpoint_id: endpoint,
                    event_id: None,
                    uid: stored_event_uid(&place.prefix, r.message_id),
                    event_type: "message.stored".to_owned(),
                    at: message.as_ref().map_or(r.at, |m| m.received_at),
                    message_id: r.message_id,
                    channel_id: r.channel_id,
                    message,
                    attempt: None,
                    url: place.url.clone(),
                    secret: place.secret.clone(),
                    tries: 1,
                }
            })
            .collect();
        Ok(StoredStep::Send(StoredRange {
            lease: token,
            upto,
            deliveries,
        }))
    }

    /// A range was sent: the endpoint's place moves past it, and each failed try becomes an
    /// event and a delivery row, due again after its `retry_in` (or at `max_age` after the
    /// message, when that comes first), in one transaction. Returns false, recording nothing,
    /// when the lease was lost (another dispatcher took the range over and sends it itself).
    pub async fn stored_sent(
        &self,
        endpoint: Uuid,
        range: &StoredRange,
        failures: &[StoredFailure<'_>],
        max_age: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut tx = dispatcher_transaction(self.pool()).await?;
        let moved = sqlx::query!(
            "UPDATE webhook_cursor
             SET stored_upto = $3, lease = NULL, lease_until = NULL
             WHERE endpoint_id = $1 AND lease = $2",
            endpoint,
            range.lease,
            range.upto
        )
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        if !failures.is_empty() {
            let events: Vec<StoredEvent<'_>> = failures
                .iter()
                .map(|f| StoredEvent::from(f.delivery))
                .collect();
            write_stored_events(&mut tx, &events).await?;
            let uids: Vec<Uuid> = failures.iter().map(|f| f.delivery.uid).collect();
            let messages: Vec<i64> = failures.iter().map(|f| f.delivery.message_id).collect();
            let ats: Vec<DateTime<Utc>> = failures.iter().map(|f| f.delivery.at).collect();
            let errors: Vec<&str> = failures.iter().map(|f| f.error).collect();
            let waits: Vec<f64> = failures.iter().map(|f| f.retry_in.as_secs_f64()).collect();
            sqlx::query!(
                "INSERT INTO webhook_delivery
                     (endpoint_id, event_id, message_id, tries, next_at, last_error, since)
                 SELECT $1, e.id, f.message_id, 1,
                        least(now() + make_interval(secs => f.wait),
                              f.at + make_interval(secs => $7)),
                        left(f.error, 500), f.at
                 FROM unnest($2::uuid[], $3::bigint[], $4::timestamptz[], $5::text[],
                             $6::float8[]) AS f(uid, message_id, at, error, wait)
                 JOIN outbox_event e ON e.uid = f.uid
                 ON CONFLICT (endpoint_id, event_id) DO NOTHING",
                endpoint,
                &uids,
                &messages,
                &ats,
                &errors as &[&str],
                &waits,
                max_age.as_secs_f64()
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Takes up to `limit` of one endpoint's deliveries that are due, for one try each: they
    /// are not due again until `lease` has passed, so no other dispatcher takes them meanwhile
    /// (and if this one dies mid-try, another takes them after it). A message's later event
    /// waits while an earlier one to the same endpoint is pending, and every event of a
    /// message waits for its message.stored (see the horizon in the cursor migration).
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
                   JOIN outbox_event de ON de.id = d.event_id
                   JOIN webhook_cursor k ON k.endpoint_id = d.endpoint_id
                   WHERE d.endpoint_id = $1 AND d.status = 'pending' AND d.next_at <= now()
                     -- After the message's message.stored: the endpoint's place in the
                     -- stored messages has passed every transaction done when it was written.
                     AND (de.type = 'message.stored' OR coalesce(de.horizon, 0) <= k.stored_upto)
                     -- A message's message.stored goes first, then its events in order.
                     AND NOT EXISTS (SELECT 1 FROM webhook_delivery p
                                     JOIN outbox_event pe ON pe.id = p.event_id
                                     WHERE p.endpoint_id = d.endpoint_id
                                       AND p.message_id = d.message_id
                                       AND p.status = 'pending'
                                       AND (pe.type <> 'message.stored', p.event_id)
                                           < (de.type <> 'message.stored', d.event_id))
                   ORDER BY d.next_at, d.event_id
                   LIMIT $2
                   FOR UPDATE OF d SKIP LOCKED
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
                    event_id: Some(r.event_id),
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
    /// no redeliver), with their deliveries; returns how many events. The `outbox_stored` rows
    /// older than that which every endpoint has passed go too.
    pub async fn prune_outbox(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
        sqlx::query!(
            "DELETE FROM outbox_stored s
             WHERE s.at < now() - make_interval(secs => $1)
               AND s.xid < (SELECT coalesce(min(stored_upto), 9223372036854775807)
                            FROM webhook_cursor)",
            older_than.as_secs_f64()
        )
        .execute(self.pool())
        .await?;
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
        let mut tx = self.pool().begin().await?;
        let stored = requeue_stored(&mut tx, event.as_uuid(), endpoint).await?;
        let done = sqlx::query!(
            "UPDATE webhook_delivery d
             SET status = 'pending', next_at = now(), done_at = NULL, tries = 0, since = now()
             FROM outbox_event e
             WHERE e.id = d.event_id AND e.uid = $1 AND d.status <> 'pending'
               AND ($2::uuid IS NULL OR d.endpoint_id = $2)",
            event.as_uuid(),
            endpoint
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stored + done.rows_affected())
    }
}

/// Queues a message.stored that went to an endpoint from `outbox_stored` (no delivery row: its
/// first try went through) again, as a pending delivery row, to `endpoint` or to every endpoint
/// it went to; returns how many were queued. Nothing for any other event id, nor where the
/// event already has a delivery row (the callers' UPDATE requeues those). Finding the message
/// reads `outbox_stored` whole: a rare, manual request.
async fn requeue_stored(
    tx: &mut sqlx::PgConnection,
    uid: Uuid,
    endpoint: Option<Uuid>,
) -> Result<u64, sqlx::Error> {
    let found = sqlx::query!(
        r#"SELECT w.id AS endpoint_id, u.message_id AS "message_id!",
                  u.channel_id AS "channel_id!", s.at
           FROM outbox_stored s
           CROSS JOIN LATERAL unnest(s.message_ids, s.channel_ids) AS u(message_id, channel_id)
           JOIN webhook_cursor k ON s.xid >= k.stored_from AND s.xid < k.stored_upto
           JOIN webhook_endpoint w ON w.id = k.endpoint_id
           WHERE s.message_ids @> ARRAY[outbox_stored_message($1)]
             AND u.message_id = outbox_stored_message($1)
             AND ($2::uuid IS NULL OR w.id = $2)
             AND webhook_endpoint_wants(w, 'message.stored', u.channel_id)"#,
        uid,
        endpoint
    )
    .fetch_all(&mut *tx)
    .await?;
    let Some(first) = found.first() else {
        return Ok(0);
    };
    let message = as_stored(&mut *tx, &[first.message_id]).await?;
    let message = message.get(&first.message_id);
    let event = StoredEvent {
        uid,
        message_id: first.message_id,
        channel_id: first.channel_id,
        at: message.map_or(first.at, |m| m.received_at),
        message,
    };
    write_stored_events(&mut *tx, &[event]).await?;
    let endpoints: Vec<Uuid> = found.iter().map(|r| r.endpoint_id).collect();
    let done = sqlx::query!(
        "INSERT INTO webhook_delivery (endpoint_id, event_id, message_id)
         SELECT w, e.id, e.message_id
         FROM unnest($1::uuid[]) AS w JOIN outbox_event e ON e.uid = $2
         ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        &endpoints,
        uid
    )
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected())
}

/// The messages with these ids as they were stored (see the `leave_message_as_stored` view);
/// erased and purged ones are missing.
async fn as_stored(
    conn: &mut sqlx::PgConnection,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, MessageRow>, sqlx::Error> {
    let rows = query_message!(
        "SELECT",
        "FROM leave_message_as_stored m JOIN web_channel c ON c.id = m.channel_id
         WHERE m.id = ANY($1)",
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|m| (m.id, m)).collect())
}

/// A message.stored event as its row holds it.
struct StoredEvent<'a> {
    uid: Uuid,
    message_id: i64,
    channel_id: Uuid,
    at: DateTime<Utc>,
    /// As it was stored; `None` once erased or purged.
    message: Option<&'a MessageRow>,
}

impl<'a> From<&'a Delivery> for StoredEvent<'a> {
    fn from(d: &'a Delivery) -> Self {
        StoredEvent {
            uid: d.uid,
            message_id: d.message_id,
            channel_id: d.channel_id,
            at: d.at,
            message: d.message.as_ref(),
        }
    }
}

/// Writes the event rows of message.stored events that had none (a failed first try, a
/// redelivery), with the message as it was sent (none once erased); one that exists already
/// (another endpoint's try failed too, or the channel e-mails its messages) is left as it is.
async fn write_stored_events(
    conn: &mut sqlx::PgConnection,
    events: &[StoredEvent<'_>],
) -> Result<(), sqlx::Error> {
    let uids: Vec<Uuid> = events.iter().map(|d| d.uid).collect();
    let messages: Vec<i64> = events.iter().map(|d| d.message_id).collect();
    let channels: Vec<Uuid> = events.iter().map(|d| d.channel_id).collect();
    let ats: Vec<DateTime<Utc>> = events.iter().map(|d| d.at).collect();
    let data: Vec<Option<serde_json::Value>> = events
        .iter()
        .map(|d| d.message.and_then(|m| serde_json::to_value(m).ok()))
        .collect();
    sqlx::query!(
        "INSERT INTO outbox_event (uid, type, message_id, channel_id, at, data)
         SELECT f.uid, 'message.stored', f.message_id, f.channel_id, f.at, f.data
         FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::timestamptz[], $5::jsonb[])
              AS f(uid, message_id, channel_id, at, data)
         ORDER BY f.message_id
         ON CONFLICT (uid) DO NOTHING",
        &uids,
        &messages,
        &channels,
        &ats,
        &data as &[Option<serde_json::Value>]
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A message.stored event's id: this installation's prefix (16 hex digits, `outbox_identity`)
/// and the message id, as the database's `outbox_stored_uid` makes it.
fn stored_event_uid(prefix: &str, message: i64) -> Uuid {
    let high = u64::from_str_radix(prefix, 16).unwrap_or(0);
    Uuid::from_u64_pair(high, u64::try_from(message).unwrap_or(0))
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
