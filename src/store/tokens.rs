//! Visitor tokens: the signing key and the current token of each (channel, visitor).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::{ChannelId, UserName};
use crate::visitor::token::{Claims, SigningKey, TokenHash};

/// Loads the shared signing key, creating it on first start. Every instance gets the same key.
#[tracing::instrument(skip_all)]
pub async fn signing_key(pool: &PgPool) -> anyhow::Result<SigningKey> {
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
pub async fn replace(
    pool: &PgPool,
    claims: &Claims,
    user_name: &UserName,
    hash: &TokenHash,
) -> Result<(), sqlx::Error> {
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
    .execute(pool)
    .await?;
    Ok(())
}

/// The holder of a token that is current, unexpired, and whose channel is enabled.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub channel_id: ChannelId,
    pub user_name: String,
    pub origins: Vec<String>,
}

/// Returns the holder if `hash` is still its visitor's current token on an enabled channel.
#[tracing::instrument(skip_all, fields(channel = %claims.channel))]
pub async fn current_holder(
    pool: &PgPool,
    claims: &Claims,
    hash: &TokenHash,
    now: DateTime<Utc>,
) -> Result<Option<TokenHolder>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT t.user_name, c.origins
         FROM visitor_token t JOIN web_channel c ON c.id = t.channel_id
         WHERE t.channel_id = $1 AND t.user_id = $2 AND t.token_hash = $3
           AND t.expires_at > $4 AND c.enabled",
        claims.channel.as_uuid(),
        claims.user_id.as_str(),
        hash.0.as_slice(),
        now,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| TokenHolder {
        channel_id: claims.channel,
        user_name: r.user_name,
        origins: r.origins,
    }))
}

/// Deletes tokens that expired before `before`; they can no longer be used anyway.
pub async fn delete_expired(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!("DELETE FROM visitor_token WHERE expires_at < $1", before)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
