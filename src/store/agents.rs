//! Agents and their API keys (only hashes are stored): creating, authenticating, listing,
//! disabling, re-enabling and replacing keys.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::AgentName;

pub struct NewAgent<'a> {
    pub name: &'a str,
    pub is_admin: bool,
    pub key_id: &'a str,
    pub key_hash: &'a [u8; 32],
}

/// A new key for an existing agent: its public id and the hash of its secret.
pub struct NewKey<'a> {
    pub key_id: &'a str,
    pub key_hash: &'a [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum CreateAgentError {
    #[error("an agent named {0:?} already exists")]
    NameTaken(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// An agent as authentication needs it.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    pub key_hash: Vec<u8>,
    pub enabled: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// An agent as `agent list` shows it: never its key.
#[derive(Debug, Clone)]
pub struct AgentSummary {
    pub name: String,
    pub is_admin: bool,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// What disabling an agent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disabled {
    NoSuchAgent,
    /// Disabled now (or before, when `already`); `released` assigned messages went back to
    /// pending.
    Done {
        already: bool,
        released: i64,
    },
}

/// What giving an agent a new key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    NoSuchAgent,
    /// The change was not made: the agent is disabled (rotate-key) or enabled (enable).
    Refused,
    Done,
}

/// How stale `last_seen_at` may grow before an accepted call writes it again.
pub const LAST_SEEN_PRECISION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl Store {
    pub async fn create_agent(&self, new: &NewAgent<'_>) -> Result<i64, CreateAgentError> {
        let created = sqlx::query_scalar!(
            "INSERT INTO agent (name, is_admin, key_id, key_hash) VALUES ($1, $2, $3, $4) RETURNING id",
            new.name,
            new.is_admin,
            new.key_id,
            new.key_hash.as_slice(),
        )
        .fetch_one(self.pool())
        .await;
        match created {
            Ok(id) => Ok(id),
            Err(e)
                if e.as_database_error()
                    .and_then(|d| d.constraint())
                    .is_some_and(|c| c == "agent_name_key") =>
            {
                Err(CreateAgentError::NameTaken(new.name.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The agent whose key has this id, enabled or not.
    pub async fn agent_by_key_id(&self, key_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let key_id = key_id.to_owned();
        self.run_retrying(move |pool| {
            let key_id = key_id.clone();
            async move {
                sqlx::query_as!(
                    AgentRecord,
                    "SELECT id, name, is_admin, key_hash, enabled, last_seen_at
                     FROM agent WHERE key_id = $1",
                    key_id
                )
                .fetch_optional(&pool)
                .await
            }
        })
        .await
    }

    /// Records, in the background, that agent `id`'s key was just accepted, unless that was
    /// recorded less than [`LAST_SEEN_PRECISION`] ago: a call never waits for it, and an agent
    /// busy all day costs one small write a minute, not one per call.
    pub fn note_agent_seen(&self, id: i64) {
        self.run_detached("recording when an agent was last seen", move |pool| async move {
            sqlx::query!(
                "UPDATE agent SET last_seen_at = now()
                 WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < now() - interval '1 minute')",
                id
            )
            .execute(&pool)
            .await
            .map(drop)
        });
    }

    /// Whether `name` is still an enabled agent whose key has id `key_id`: for work that
    /// outlives the call that authenticated it (live streams, exports).
    pub async fn agent_key_is_current(
        &self,
        name: &AgentName,
        key_id: &str,
    ) -> Result<bool, StoreError> {
        let (name, key_id) = (name.as_str().to_owned(), key_id.to_owned());
        self.run_retrying(move |pool| {
            let (name, key_id) = (name.clone(), key_id.clone());
            async move {
                sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM agent WHERE name = $1 AND key_id = $2 AND enabled)
                       AS "current!""#,
                    name,
                    key_id
                )
                .fetch_one(&pool)
                .await
            }
        })
        .await
    }

    /// Whether an agent has this name (`Some(enabled)`), or none does.
    pub async fn agent_enabled(&self, name: &AgentName) -> Result<Option<bool>, StoreError> {
        let name = name.as_str().to_owned();
        self.run_retrying(move |pool| {
            let name = name.clone();
            async move {
                sqlx::query_scalar!("SELECT enabled FROM agent WHERE name = $1", name)
                    .fetch_optional(&pool)
                    .await
            }
        })
        .await
    }

    /// Every agent, by name.
    pub async fn agents(&self) -> Result<Vec<AgentSummary>, StoreError> {
        Ok(sqlx::query_as!(
            AgentSummary,
            "SELECT name, is_admin, enabled, created_at, disabled_at, last_seen_at
             FROM agent ORDER BY name"
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Disables an agent: its key is refused from the commit on, and the messages assigned to
    /// it go back to pending, each with a history row saying why.
    ///
    /// Two statements in one transaction. The first takes the agent's row, which waits for any
    /// claim or assignment to it that is under way (those lock the row for share, see
    /// `store::queue`) and makes any later one find the agent disabled. The second, with a
    /// snapshot taken after that wait, therefore sees every message that was assigned to the
    /// agent, and releases them all. Disabling an agent that is disabled already releases
    /// whatever is still assigned to it.
    pub async fn disable_agent(&self, name: &AgentName) -> Result<Disabled, StoreError> {
        let name = name.as_str();
        let mut tx = self.pool().begin().await?;
        let was_enabled = sqlx::query_scalar!(
            "WITH before AS (SELECT id, enabled FROM agent WHERE name = $1 FOR NO KEY UPDATE)
             UPDATE agent a SET enabled = false, disabled_at = coalesce(a.disabled_at, now())
             FROM before WHERE a.id = before.id
             RETURNING before.enabled",
            name
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(was_enabled) = was_enabled else {
            return Ok(Disabled::NoSuchAgent);
        };
        let released = sqlx::query_scalar!(
            r#"WITH released AS (
                 UPDATE leave_message
                 SET status = 'pending', assigned_to = NULL, assigned_at = NULL
                 WHERE status = 'assigned' AND assigned_to = $1
                 RETURNING id
             ), logged AS (
                 INSERT INTO leave_message_event
                     (message_id, agent, action, from_status, to_status, reason)
                 SELECT id, $1, 'release', 'assigned', 'pending', 'agent_disabled' FROM released
             )
             SELECT count(*) AS "released!" FROM released"#,
            name
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Disabled::Done {
            already: !was_enabled,
            released,
        })
    }

    /// Gives an enabled agent a new key; the old one is refused from the commit on. A
    /// disabled agent is refused: giving it a key would not let it in.
    pub async fn rotate_agent_key(
        &self,
        name: &AgentName,
        key: &NewKey<'_>,
    ) -> Result<KeyChange, StoreError> {
        let changed = sqlx::query_scalar!(
            r#"WITH target AS (SELECT id, enabled FROM agent WHERE name = $1 FOR NO KEY UPDATE),
                    changed AS (
                 UPDATE agent a SET key_id = $2, key_hash = $3
                 FROM target WHERE a.id = target.id AND target.enabled
                 RETURNING a.id
             )
             SELECT (SELECT count(*) FROM changed) = 1 AS "changed!""#,
            name.as_str(),
            key.key_id,
            key.key_hash.as_slice(),
        )
        .fetch_one(self.pool())
        .await?;
        self.key_change(name, changed).await
    }

    /// Enables a disabled agent with a new key: the key it had before it was disabled never
    /// works again. An enabled agent is refused (its key stays as it is).
    pub async fn enable_agent(
        &self,
        name: &AgentName,
        key: &NewKey<'_>,
    ) -> Result<KeyChange, StoreError> {
        let changed = sqlx::query_scalar!(
            r#"WITH changed AS (
                 UPDATE agent SET enabled = true, disabled_at = NULL, key_id = $2, key_hash = $3
                 WHERE name = $1 AND NOT enabled
                 RETURNING id
             )
             SELECT (SELECT count(*) FROM changed) = 1 AS "changed!""#,
            name.as_str(),
            key.key_id,
            key.key_hash.as_slice(),
        )
        .fetch_one(self.pool())
        .await?;
        self.key_change(name, changed).await
    }

    /// Whether a key change was made, refused, or found no agent.
    async fn key_change(&self, name: &AgentName, changed: bool) -> Result<KeyChange, StoreError> {
        if changed {
            return Ok(KeyChange::Done);
        }
        Ok(match self.agent_enabled(name).await? {
            Some(_) => KeyChange::Refused,
            None => KeyChange::NoSuchAgent,
        })
    }
}
