//! The agents' work queue on `leave_message`: claiming and state changes. Each change is one
//! statement that updates the row only from the status it may leave, and records the change in
//! `leave_message_event`. `None` from a change means it did not apply (or there is no such
//! message): the caller reads the message to say which.
//!
//! A change that gives a message to an agent (claim-next, claim, assign) applies only while
//! that agent is enabled, and locks the agent's row for share to make sure: disabling an agent
//! (`store::agents`) waits for such changes under way, then releases what they assigned, and
//! any later one finds the agent disabled. No message stays assigned to a disabled agent.

use super::listing::custom_plans;
use super::{MessageRow, Store, StoreError};
use crate::domain::{AgentName, AttemptResult, ChannelId, MessageId, Note, Outcome};

/// How many messages are where, now (`GET /api/v1/queue`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub pending: i64,
    /// Pending and due now.
    pub due: i64,
    /// Not processed and past the service level.
    pub overdue: i64,
    pub assigned: i64,
    /// Assigned to the agent who asks.
    pub mine: i64,
    /// Now minus the earliest `due_at` among the due messages, in whole seconds; 0 if none.
    pub oldest_due_age_seconds: i64,
}

/// Who asks for a change, and whether they may act on messages assigned to others.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: AgentName,
    pub is_admin: bool,
}

impl Store {
    /// The pending message (of one channel, if given) that has been due longest, now assigned
    /// to `agent`: the earliest `due_at` that is not in the future, then the oldest, then the
    /// lowest id. A message due later is never handed out. `SKIP LOCKED` makes concurrent
    /// callers on any instance take different messages; a row that changed under the lock
    /// (another instance's attempt made it due later) is checked again and passed over.
    #[tracing::instrument(skip_all)]
    pub async fn claim_next(
        &self,
        agent: &AgentName,
        channel_id: Option<ChannelId>,
    ) -> Result<Option<MessageRow>, StoreError> {
        let agent = agent.as_str().to_owned();
        self.run(move |pool| async move {
            query_message!(
                "WITH assignee AS (
             SELECT name FROM agent WHERE name = $1 AND enabled FOR SHARE
         ), next AS (
             SELECT id FROM leave_message
             WHERE status = 'pending' AND due_at <= now()
               AND ($2::uuid IS NULL OR channel_id = $2)
               AND EXISTS (SELECT FROM assignee)
             ORDER BY due_at, received_at, id
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
                "FROM changed m JOIN web_channel c ON c.id = m.channel_id",
                agent,
                channel_id.map(|c| c.as_uuid()),
            )
            .fetch_optional(&pool)
            .await
        })
        .await
    }

    /// pending → assigned to `agent`.
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn claim(
        &self,
        id: MessageId,
        agent: &AgentName,
    ) -> Result<Option<MessageRow>, StoreError> {
        let agent = agent.as_str().to_owned();
        self.run(move |pool| async move {
            query_message!(
                "WITH assignee AS (
             SELECT name FROM agent WHERE name = $2 AND enabled FOR SHARE
         ), changed AS (
             UPDATE leave_message m
             SET status = 'assigned', assigned_to = assignee.name, assigned_at = now()
             FROM assignee
             WHERE m.id = $1 AND m.status = 'pending'
             RETURNING m.*
         ), logged AS (
             INSERT INTO leave_message_event (message_id, agent, action, from_status, to_status, assigned_to)
             SELECT id, $2, 'claim', 'pending', 'assigned', $2 FROM changed
         )
         SELECT",
                "FROM changed m JOIN web_channel c ON c.id = m.channel_id",
                id.get(),
                agent,
            )
            .fetch_optional(&pool)
            .await
        })
        .await
    }

    /// pending or assigned → assigned to `to_agent`, by the admin `by_agent`.
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn assign(
        &self,
        id: MessageId,
        by_agent: &AgentName,
        to_agent: &AgentName,
    ) -> Result<Option<MessageRow>, StoreError> {
        let (by_agent, to_agent) = (by_agent.as_str().to_owned(), to_agent.as_str().to_owned());
        self.run(move |pool| async move {
            query_message!(
                "WITH assignee AS (
             SELECT name FROM agent WHERE name = $3 AND enabled FOR SHARE
         ), before AS (
             SELECT id, status FROM leave_message
             WHERE id = $1 AND status IN ('pending', 'assigned') AND EXISTS (SELECT FROM assignee)
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
                "FROM changed m JOIN web_channel c ON c.id = m.channel_id",
                id.get(),
                by_agent,
                to_agent,
            )
            .fetch_optional(&pool)
            .await
        })
        .await
    }

    /// assigned → pending, by its assignee or an admin.
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn release(
        &self,
        id: MessageId,
        actor: &Actor,
    ) -> Result<Option<MessageRow>, StoreError> {
        let (agent, as_admin) = (actor.name.as_str().to_owned(), actor.is_admin);
        self.run(move |pool| async move {
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
                "FROM changed m JOIN web_channel c ON c.id = m.channel_id",
                id.get(),
                agent,
                as_admin,
            )
            .fetch_optional(&pool)
            .await
        })
        .await
    }

    /// assigned → processed with an outcome and note, by its assignee or an admin.
    #[tracing::instrument(skip_all, fields(%id))]
    pub async fn process(
        &self,
        id: MessageId,
        actor: &Actor,
        outcome: Outcome,
        note: Option<Note>,
    ) -> Result<Option<MessageRow>, StoreError> {
        let (agent, as_admin) = (actor.name.as_str().to_owned(), actor.is_admin);
        self.run(move |pool| async move {
            query_message!(
                "WITH changed AS (
             UPDATE leave_message
             SET status = 'processed', processed_by = $2, processed_at = now(),
                 outcome = $4, note = $5
             WHERE id = $1 AND status = 'assigned' AND (assigned_to = $2 OR $3)
             RETURNING *
         ), logged AS (
             INSERT INTO leave_message_event
                 (message_id, agent, action, from_status, to_status, assigned_to, outcome, note)
             SELECT id, $2, 'process', 'assigned', 'processed', assigned_to, $4, $5 FROM changed
         )
         SELECT",
                "FROM changed m JOIN web_channel c ON c.id = m.channel_id",
                id.get(),
                agent,
                as_admin,
                outcome.as_str(),
                note.as_ref().map(Note::as_str),
            )
            .fetch_optional(&pool)
            .await
        })
        .await
    }

    /// Records a call attempt on an assigned message, by its assignee or an admin, in one
    /// statement: `attempts` + 1, and a history row with the result and note. `reached`,
    /// `wrong_number` and `spam` close the message (outcome `called_back`, `wrong_number`,
    /// `spam`); the others put it back in the pending queue, due the channel's `retry_minutes`
    /// from now, unless this was its last attempt (`max_attempts`): then it closes as
    /// `no_answer`. A note given replaces the message's note; the history keeps every one.
    ///
    /// The message's row is locked first and everything is decided from its latest version,
    /// so two attempts recorded at once count as two, and an attempt racing a release or a
    /// process finds the message no longer assigned (`None`).
    #[tracing::instrument(skip_all, fields(%id, result = result.as_str()))]
    pub async fn record_attempt(
        &self,
        id: MessageId,
        actor: &Actor,
        result: AttemptResult,
        note: Option<Note>,
    ) -> Result<Option<MessageRow>, StoreError> {
        let (agent, as_admin) = (actor.name.as_str().to_owned(), actor.is_admin);
        self.run(move |pool| async move {
            query_message!(
                "WITH target AS (
             SELECT m.id, c.retry_minutes,
                    coalesce($5, CASE WHEN m.attempts + 1 >= c.max_attempts THEN 'no_answer' END)
                        AS outcome
             FROM leave_message m JOIN web_channel c ON c.id = m.channel_id
             WHERE m.id = $1 AND m.status = 'assigned' AND (m.assigned_to = $2 OR $3)
             FOR UPDATE OF m
         ), changed AS (
             UPDATE leave_message m
             SET attempts = m.attempts + 1,
                 status = CASE WHEN t.outcome IS NULL THEN 'pending' ELSE 'processed' END,
                 assigned_to = CASE WHEN t.outcome IS NULL THEN NULL ELSE m.assigned_to END,
                 assigned_at = CASE WHEN t.outcome IS NULL THEN NULL ELSE m.assigned_at END,
                 due_at = CASE WHEN t.outcome IS NULL
                               THEN now() + make_interval(mins => t.retry_minutes)
                               ELSE m.due_at END,
                 processed_by = CASE WHEN t.outcome IS NULL THEN NULL ELSE $2 END,
                 processed_at = CASE WHEN t.outcome IS NULL THEN NULL ELSE now() END,
                 outcome = t.outcome,
                 note = coalesce($6, m.note)
             FROM target t WHERE m.id = t.id
             RETURNING m.*
         ), logged AS (
             INSERT INTO leave_message_event
                 (message_id, agent, action, from_status, to_status, assigned_to, outcome,
                  result, note)
             SELECT id, $2, 'attempt', 'assigned', status, assigned_to, outcome, $4, $6
             FROM changed
         )
         SELECT",
                "FROM changed m JOIN web_channel c ON c.id = m.channel_id",
                id.get(),
                agent,
                as_admin,
                result.as_str(),
                result.closes_with().map(|o| o.as_str()),
                note.as_ref().map(Note::as_str),
            )
            .fetch_optional(&pool)
            .await
        })
        .await
    }

    /// The queue's counts now, of one channel if given; `mine` counts what is assigned to
    /// `agent`. One statement (one snapshot, one `now()`); each count reads one of the queue's
    /// partial indexes alone (see migrations), not the messages themselves.
    #[tracing::instrument(skip_all)]
    pub async fn queue_counts(
        &self,
        agent: &AgentName,
        channel_id: Option<ChannelId>,
    ) -> Result<QueueCounts, StoreError> {
        let agent = agent.as_str().to_owned();
        self.run_retrying(move |pool| {
            let agent = agent.clone();
            async move {
                let mut tx = custom_plans(&pool).await?;
                let counts = sqlx::query_as!(
                    QueueCounts,
                    r#"SELECT
                 (SELECT count(*) FROM leave_message
                  WHERE status = 'pending' AND ($2::uuid IS NULL OR channel_id = $2))
                     AS "pending!",
                 (SELECT count(*) FROM leave_message
                  WHERE status = 'pending' AND due_at <= now()
                    AND ($2::uuid IS NULL OR channel_id = $2))
                     AS "due!",
                 (SELECT count(*) FROM web_channel c JOIN leave_message m ON m.channel_id = c.id
                  WHERE m.status <> 'processed'
                    AND m.due_at <= now() - make_interval(mins => c.sla_minutes)
                    AND ($2::uuid IS NULL OR c.id = $2))
                     AS "overdue!",
                 (SELECT count(*) FROM leave_message
                  WHERE status = 'assigned' AND ($2::uuid IS NULL OR channel_id = $2))
                     AS "assigned!",
                 (SELECT count(*) FROM leave_message
                  WHERE status = 'assigned' AND assigned_to = $1
                    AND ($2::uuid IS NULL OR channel_id = $2))
                     AS "mine!",
                 coalesce(floor(extract(epoch FROM now() - (
                     SELECT min(due_at) FROM leave_message
                     WHERE status = 'pending' AND due_at <= now()
                       AND ($2::uuid IS NULL OR channel_id = $2))))::bigint, 0)
                     AS "oldest_due_age_seconds!""#,
                    agent,
                    channel_id.map(|c| c.as_uuid()),
                )
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(counts)
            }
        })
        .await
    }
}
