//! Agents and their API keys (only hashes are stored).

use super::{Store, StoreError};
use crate::domain::AgentName;

pub struct NewAgent<'a> {
    pub name: &'a str,
    pub is_admin: bool,
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
}

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

    pub async fn agent_by_key_id(&self, key_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let key_id = key_id.to_owned();
        self.run_retrying(move |pool| {
            let key_id = key_id.clone();
            async move {
                sqlx::query_as!(
                    AgentRecord,
                    "SELECT id, name, is_admin, key_hash FROM agent WHERE key_id = $1",
                    key_id
                )
                .fetch_optional(&pool)
                .await
            }
        })
        .await
    }

    pub async fn agent_exists(&self, name: &AgentName) -> Result<bool, StoreError> {
        let name = name.as_str().to_owned();
        self.run_retrying(move |pool| {
            let name = name.clone();
            async move {
                sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM agent WHERE name = $1) AS "found!""#,
                    name
                )
                .fetch_one(&pool)
                .await
            }
        })
        .await
    }
}
