//! The agents' work queue on `leave_message`: listing, claiming and state changes. Each change
//! is one statement that updates the row only from the status it may leave, and records the
//! change in `leave_message_event`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{Outcome, Status};

/// A message as agents see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

impl Message {
    /// The field names in JSON order: the CSV header.
    pub const FIELDS: [&'static str; 15] = [
        "id",
        "channelId",
        "userId",
        "userName",
        "phoneNo",
        "leaveMessage",
        "clientIp",
        "userAgent",
        "receivedAt",
        "status",
        "assignedTo",
        "assignedAt",
        "processedAt",
        "outcome",
        "note",
    ];
}

/// `query_as!(Message, …)` with the Message columns between `$before` and the rest.
macro_rules! query_message {
    ($before:literal, $after:literal $(+ $more:literal)* $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Message,
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

/// The messages matching a [`Filter`] bound as `$1`-`$6`, followed by `$tail`; the list and
/// the export share it.
macro_rules! query_filtered {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        query_message!(
            "SELECT",
            "FROM leave_message
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::uuid IS NULL OR channel_id = $2)
               AND ($3::text IS NULL OR phone_digits = $3)
               AND ($4::text IS NULL OR assigned_to = $4)
               AND ($5::timestamptz IS NULL OR received_at >= $5)
               AND ($6::timestamptz IS NULL OR received_at < $6) "
                + $tail
            $(, $arg)*
        )
    };
}

/// Filters of the list and the CSV export; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub channel_id: Option<Uuid>,
    pub phone_digits: Option<String>,
    pub agent: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A position in list order, `(received_at, id)`: the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub received_at: DateTime<Utc>,
    pub id: i64,
}

/// Up to `limit` messages matching `filter`, oldest first, after `after`.
#[tracing::instrument(skip_all)]
pub async fn list(
    pool: &PgPool,
    filter: &Filter,
    after: Option<Position>,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    let mut tx = custom_plans(pool).await?;
    let page = query_filtered!(
        "AND ($7::timestamptz IS NULL OR (received_at, id) > ($7, $8))
         ORDER BY received_at, id
         LIMIT $9",
        filter.status.map(|s| s.as_str()),
        filter.channel_id,
        filter.phone_digits.as_deref(),
        filter.agent.as_deref(),
        filter.from,
        filter.to,
        after.map(|p| p.received_at),
        after.map_or(0, |p| p.id),
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(page)
}

/// A read transaction whose statements are planned with their actual parameters, so optional
/// filters (`$1 IS NULL OR …`) fold away and the partial queue indexes are used.
async fn custom_plans(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Message>, sqlx::Error> {
    query_message!("SELECT", "FROM leave_message WHERE id = $1", id)
        .fetch_optional(pool)
        .await
}

/// Several messages by id, in list order (for the live stream).
pub async fn get_many(pool: &PgPool, ids: &[i64]) -> Result<Vec<Message>, sqlx::Error> {
    query_message!(
        "SELECT",
        "FROM leave_message WHERE id = ANY($1) ORDER BY received_at, id",
        ids
    )
    .fetch_all(pool)
    .await
}

/// The oldest pending message (of one channel, if given), now assigned to `agent`.
/// `SKIP LOCKED` makes concurrent callers on any instance take different messages.
#[tracing::instrument(skip_all)]
pub async fn claim_next(
    pool: &PgPool,
    agent: &str,
    channel_id: Option<Uuid>,
) -> Result<Option<Message>, sqlx::Error> {
    query_message!(
        "WITH next AS (
             SELECT id FROM leave_message
             WHERE status = 'pending' AND ($2::uuid IS NULL OR channel_id = $2)
             ORDER BY received_at, id
             LIMIT 1
             FOR UPDATE SKIP LOCKED
         ), changed AS (
             UPDATE leave_message m
             SET status = 'assigned', assigned_to = $1, assigned_at = now()
             FROM next WHERE m.id = next.id
             RETURNING m.*
         ), logged AS (
             INSERT INTO leave_message_event (message_id, agent, action, from_status, to_status, assigned_to)
             SELECT id, $1, 'claim', 'pending', 'assigned', $1 FROM changed
         )
         SELECT",
        "FROM changed",
        agent,
        channel_id,
    )
    .fetch_optional(pool)
    .await
}

/// pending → assigned to `agent`. `None` when the message is not pending (or missing).
#[tracing::instrument(skip_all, fields(id))]
pub async fn claim(pool: &PgPool, id: i64, agent: &str) -> Result<Option<Message>, sqlx::Error> {
    query_message!(
        "WITH changed AS (
             UPDATE leave_message
             SET status = 'assigned', assigned_to = $2, assigned_at = now()
             WHERE id = $1 AND status = 'pending'
             RETURNING *
         ), logged AS (
             INSERT INTO leave_message_event (message_id, agent, action, from_status, to_status, assigned_to)
             SELECT id, $2, 'claim', 'pending', 'assigned', $2 FROM changed
         )
         SELECT",
        "FROM changed",
        id,
        agent,
    )
    .fetch_optional(pool)
    .await
}

/// pending or assigned → assigned to `to_agent`, by the admin `by_agent`.
#[tracing::instrument(skip_all, fields(id))]
pub async fn assign(
    pool: &PgPool,
    id: i64,
    by_agent: &str,
    to_agent: &str,
) -> Result<Option<Message>, sqlx::Error> {
    query_message!(
        "WITH before AS (
             SELECT id, status FROM leave_message
             WHERE id = $1 AND status IN ('pending', 'assigned')
             FOR UPDATE
         ), changed AS (
             UPDATE leave_message m
             SET status = 'assigned', assigned_to = $3, assigned_at = now()
             FROM before WHERE m.id = before.id
             RETURNING m.*, before.status AS from_status
         ), logged AS (
             INSERT INTO leave_message_event (message_id, agent, action, from_status, to_status, assigned_to)
             SELECT id, $2, 'assign', from_status, 'assigned', $3 FROM changed
         )
         SELECT",
        "FROM changed",
        id,
        by_agent,
        to_agent,
    )
    .fetch_optional(pool)
    .await
}

/// assigned → pending, by its assignee (or anyone when `as_admin`).
#[tracing::instrument(skip_all, fields(id))]
pub async fn release(
    pool: &PgPool,
    id: i64,
    agent: &str,
    as_admin: bool,
) -> Result<Option<Message>, sqlx::Error> {
    query_message!(
        "WITH changed AS (
             UPDATE leave_message
             SET status = 'pending', assigned_to = NULL, assigned_at = NULL
             WHERE id = $1 AND status = 'assigned' AND (assigned_to = $2 OR $3)
             RETURNING *
         ), logged AS (
             INSERT INTO leave_message_event (message_id, agent, action, from_status, to_status)
             SELECT id, $2, 'release', 'assigned', 'pending' FROM changed
         )
         SELECT",
        "FROM changed",
        id,
        agent,
        as_admin,
    )
    .fetch_optional(pool)
    .await
}

/// assigned → processed with an outcome and note, by its assignee (or anyone when `as_admin`).
#[tracing::instrument(skip_all, fields(id))]
pub async fn process(
    pool: &PgPool,
    id: i64,
    agent: &str,
    as_admin: bool,
    outcome: Outcome,
    note: Option<&str>,
) -> Result<Option<Message>, sqlx::Error> {
    query_message!(
        "WITH changed AS (
             UPDATE leave_message
             SET status = 'processed', processed_by = $2, processed_at = now(),
                 outcome = $4, note = $5
             WHERE id = $1 AND status = 'assigned' AND (assigned_to = $2 OR $3)
             RETURNING *
         ), logged AS (
             INSERT INTO leave_message_event
                 (message_id, agent, action, from_status, to_status, assigned_to, outcome)
             SELECT id, $2, 'process', 'assigned', 'processed', assigned_to, $4 FROM changed
         )
         SELECT",
        "FROM changed",
        id,
        agent,
        as_admin,
        outcome.as_str(),
        note,
    )
    .fetch_optional(pool)
    .await
}

/// The highest message id stored so far, if any.
pub async fn newest_id(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT max(id) FROM leave_message")
        .fetch_one(pool)
        .await
}

/// Messages with an id above `after`, in id order (replayed to streams after a reconnection).
pub async fn stored_after(
    pool: &PgPool,
    after: i64,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    query_message!(
        "SELECT",
        "FROM leave_message WHERE id > $1 ORDER BY id LIMIT $2",
        after,
        limit
    )
    .fetch_all(pool)
    .await
}

/// Sends every message matching `filter`, in list order, into `sink`, reading rows as they
/// come (constant memory however many match). Stops early when the receiver is gone.
pub async fn export(
    pool: &PgPool,
    filter: &Filter,
    sink: tokio::sync::mpsc::Sender<Message>,
) -> Result<(), sqlx::Error> {
    use futures_util::TryStreamExt;
    let mut tx = custom_plans(pool).await?;
    let mut rows = query_filtered!(
        "ORDER BY received_at, id",
        filter.status.map(|s| s.as_str()),
        filter.channel_id,
        filter.phone_digits.as_deref(),
        filter.agent.as_deref(),
        filter.from,
        filter.to,
    )
    .fetch(&mut *tx);
    while let Some(message) = rows.try_next().await? {
        if sink.send(message).await.is_err() {
            break;
        }
    }
    drop(rows);
    tx.commit().await
}
