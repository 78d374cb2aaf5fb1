//! The agents' work queue on `leave_message`: claiming and state changes. Each change is one
//! statement that updates the row only from the status it may leave, and records the change in
//! `leave_message_event`. `None` from a change means it did not apply (or there is no such
//! message): the caller reads the message to say which.
//!
//! A change that gives a message to an agent (claim-next, claim, assign) applies only while
//! that agent is enabled, and locks the agent's row for share to make sure: disabling an agent
//! (`store::agents`) waits for such changes under way, then releases what they assigned, and
//! any later one finds the agent disabled. No message stays assigned to a disabled agent.

use super::{MessageRow, Store, StoreError};
use crate::domain::{AgentName, ChannelId, MessageId, Note, Outcome};

/// Who asks for a change, and whether they may act on messages assigned to others.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: AgentName,
    pub is_admin: bool,
}

impl Store {
    /// The oldest pending message (of one channel, if given), now assigned to `agent`.
    /// `SKIP LOCKED` makes concurrent callers on any instance take different messages.
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
             WHERE status = 'pending' AND ($2::uuid IS NULL OR channel_id = $2)
               AND EXISTS (SELECT FROM assignee)
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
                "FROM changed",
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
                "FROM changed",
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
                "FROM changed",
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
                 (message_id, agent, action, from_status, to_status, assigned_to, outcome)
             SELECT id, $2, 'process', 'assigned', 'processed', assigned_to, $4 FROM changed
         )
         SELECT",
                "FROM changed",
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
}
