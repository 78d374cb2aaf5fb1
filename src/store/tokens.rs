//! Visitor tokens: the signing key and the current token of each (channel, visitor).

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::credentials::{Claims, SigningKey, TokenHash};
use crate::domain::{ChannelId, UserName};

/// The holder of a token that is current, unexpired, and whose channel is enabled.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub channel_id: ChannelId,
    pub user_name: String,
    pub origins: Vec<String>,
}

impl Store {
    /// Loads the shared signing key, creating it on first start. Every instance gets the same key.
    #[tracing::instrument(skip_all)]
    pub async fn signing_key(&self) -> anyhow::Result<SigningKey> {
        let pool = self.pool();
        let candidate = SigningKey::generate();
        sqlx::query!(
            "INSERT INTO token_signing_key (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            candidate.as_bytes().as_slice()
        )
        .execute(pool)
        .await?;
        let secret = sqlx::query_scalar!("SELECT secret FROM token_signing_key WHERE id = 1")
            .fetch_one(pool)
            .await?;
        SigningKey::from_bytes(&secret)
            .ok_or_else(|| anyhow::anyhow!("token_signing_key.secret is not 32 bytes"))
    }

    /// Makes `hash` the current token of its visitor, revoking any older one.
    #[tracing::instrument(skip_all, fields(channel = %claims.channel))]
    pub async fn replace_token(
        &self,
        claims: &Claims,
        user_name: &UserName,
        hash: &TokenHash,
    ) -> Result<(), StoreError> {
        let (claims, user_name, hash) = (claims.clone(), user_name.clone(), *hash);
        self.run_retrying(move |pool| {
            let (claims, user_name) = (claims.clone(), user_name.clone());
            async move {
                sqlx::query!(
                    "INSERT INTO visitor_token (channel_id, user_id, user_name, token_hash, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (channel_id, user_id) DO UPDATE
         SET user_name = EXCLUDED.user_name, token_hash = EXCLUDED.token_hash,
             issued_at = EXCLUDED.issued_at, expires_at = EXCLUDED.expires_at",
                    claims.channel.as_uuid(),
                    claims.user_id.as_str(),
                    user_name.as_str(),
                    hash.0.as_slice(),
                    claims.issued_at,
                    claims.expires_at,
                )
                .execute(&pool)
                .await
            }
        })
        .await?;
        Ok(())
    }

    /// Returns the holder if `hash` is still its visitor's current token on an enabled channel.
    #[tracing::instrument(skip_all, fields(channel = %claims.channel))]
    pub async fn token_holder(
        &self,
        claims: &Claims,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenHolder>, StoreError> {
        let (channel, user_id, hash) = (claims.channel, claims.user_id.clone(), *hash);
        let row = self
            .run_retrying(move |pool| {
                let user_id = user_id.clone();
                async move {
                    sqlx::query!(
                        "SELECT t.user_name, c.origins
         FROM visitor_token t JOIN web_channel c ON c.id = t.channel_id
         WHERE t.channel_id = $1 AND t.user_id = $2 AND t.token_hash = $3
           AND t.expires_at > $4 AND c.enabled",
                        channel.as_uuid(),
                        user_id.as_str(),
                        hash.0.as_slice(),
                        now,
                    )
                    .fetch_optional(&pool)
                    .await
                }
            })
            .await?;
        Ok(row.map(|r| TokenHolder {
            channel_id: channel,
            user_name: r.user_name,
            origins: r.origins,
        }))
    }

    /// Deletes tokens that expired before `before`; they can no longer be used anyway.
    pub async fn delete_expired_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = self
            .run_retrying(move |pool| async move {
                sqlx::query!("DELETE FROM visitor_token WHERE expires_at < $1", before)
                    .execute(&pool)
                    .await
            })
            .await?;
        Ok(done.rows_affected())
    }
}
