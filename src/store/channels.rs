//! Web channel configurations.

use super::{Store, StoreError};
use crate::domain::{ChannelId, WebOrigin};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: ChannelId,
    pub name: String,
    pub origins: Vec<String>,
    pub cross_site: bool,
    pub prompt: Option<String>,
    pub callbacks: CallbackSettings,
    /// Addresses that get one e-mail per stored message (CONTRACT §7.2).
    pub notify_emails: Vec<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A channel's callback settings (CONTRACT §3.1); the table's CHECKs hold the same ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackSettings {
    /// Call attempts a message gets (1-10).
    pub max_attempts: i16,
    /// Minutes after an unsuccessful attempt until the message is due again (1-10080).
    pub retry_minutes: i32,
    /// Minutes after it is due until a message not processed is overdue (1-43200).
    pub sla_minutes: i32,
}

impl CallbackSettings {
    pub const DEFAULT: CallbackSettings = CallbackSettings {
        max_attempts: 3,
        retry_minutes: 60,
        sla_minutes: 240,
    };
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A `web_channel` row as read.
struct ChannelRow {
    id: uuid::Uuid,
    name: String,
    origins: Vec<String>,
    cross_site: bool,
    prompt: Option<String>,
    max_attempts: i16,
    retry_minutes: i32,
    sla_minutes: i32,
    notify_emails: Vec<String>,
    enabled: bool,
    created_at: DateTime<Utc>,
}

impl From<ChannelRow> for Channel {
    fn from(r: ChannelRow) -> Self {
        Channel {
            id: ChannelId::from_uuid(r.id),
            name: r.name,
            origins: r.origins,
            cross_site: r.cross_site,
            prompt: r.prompt,
            callbacks: CallbackSettings {
                max_attempts: r.max_attempts,
                retry_minutes: r.retry_minutes,
                sla_minutes: r.sla_minutes,
            },
            notify_emails: r.notify_emails,
            enabled: r.enabled,
            created_at: r.created_at,
        }
    }
}

pub struct NewChannel<'a> {
    pub name: &'a str,
    pub origins: &'a [String],
    pub cross_site: bool,
    pub prompt: Option<&'a str>,
    pub callbacks: CallbackSettings,
    /// Parsed addresses ([`crate::domain::EmailAddress`]), as text.
    pub notify_emails: &'a [String],
}

/// A change of a channel's settings: `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub struct ChannelUpdate<'a> {
    pub name: Option<&'a str>,
    /// `Some(None)` brings back the default prompt.
    pub prompt: Option<Option<&'a str>>,
    pub origins: Option<&'a [String]>,
    pub cross_site: Option<bool>,
    pub max_attempts: Option<i16>,
    pub retry_minutes: Option<i32>,
    pub sla_minutes: Option<i32>,
    /// Replaces the list (empty: no e-mail).
    pub notify_emails: Option<&'a [String]>,
}

impl Store {
    pub async fn create_channel(&self, new: &NewChannel<'_>) -> Result<ChannelId, StoreError> {
        let id = ChannelId::new_random();
        sqlx::query!(
            "INSERT INTO web_channel (id, name, origins, cross_site, prompt, max_attempts,
                                      retry_minutes, sla_minutes, notify_emails)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            id.as_uuid(),
            new.name,
            new.origins,
            new.cross_site,
            new.prompt,
            new.callbacks.max_attempts,
            new.callbacks.retry_minutes,
            new.callbacks.sla_minutes,
            new.notify_emails,
        )
        .execute(self.pool())
        .await?;
        Ok(id)
    }

    /// A channel, enabled or not.
    pub async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, StoreError> {
        let row = self
            .run_retrying(move |pool| async move {
                sqlx::query_as!(
                    ChannelRow,
                    "SELECT id, name, origins, cross_site, prompt, max_attempts, retry_minutes, sla_minutes,
                notify_emails, enabled, created_at
         FROM web_channel WHERE id = $1",
                    id.as_uuid()
                )
                .fetch_optional(&pool)
                .await
            })
            .await?;
        Ok(row.map(Channel::from))
    }

    pub async fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        let rows = sqlx::query_as!(
            ChannelRow,
            "SELECT id, name, origins, cross_site, prompt, max_attempts, retry_minutes, sla_minutes,
                notify_emails, enabled, created_at
         FROM web_channel ORDER BY created_at, id"
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(Channel::from).collect())
    }

    /// Disables a channel; its tokens stop working at once. Returns false if there is no such
    /// channel.
    pub async fn disable_channel(&self, id: ChannelId) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE web_channel SET enabled = false, disabled_at = coalesce(disabled_at, now())
         WHERE id = $1",
            id.as_uuid()
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Changes a channel's settings; returns it as it is now, or `None` if there is no such
    /// channel. Nothing keeps channel settings in memory for long: the form page and applyToken
    /// read the channel per request, and doLeaveMessage reads a cross-origin caller's token and
    /// channel afresh, so every instance follows at once.
    pub async fn update_channel(
        &self,
        id: ChannelId,
        change: &ChannelUpdate<'_>,
    ) -> Result<Option<Channel>, StoreError> {
        let row = sqlx::query_as!(
            ChannelRow,
            "UPDATE web_channel
             SET name = coalesce($2, name),
                 prompt = CASE WHEN $3 THEN $4 ELSE prompt END,
                 origins = coalesce($5, origins),
                 cross_site = coalesce($6, cross_site),
                 max_attempts = coalesce($7, max_attempts),
                 retry_minutes = coalesce($8, retry_minutes),
                 sla_minutes = coalesce($9, sla_minutes),
                 notify_emails = coalesce($10, notify_emails)
             WHERE id = $1
             RETURNING id, name, origins, cross_site, prompt, max_attempts, retry_minutes,
                       sla_minutes, notify_emails, enabled, created_at",
            id.as_uuid(),
            change.name,
            change.prompt.is_some(),
            change.prompt.flatten(),
            change.origins,
            change.cross_site,
            change.max_attempts,
            change.retry_minutes,
            change.sla_minutes,
            change.notify_emails,
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(Channel::from))
    }

    /// How many channels have addresses to notify by e-mail.
    pub async fn channels_notifying_by_email(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM web_channel WHERE notify_emails <> '{}'"#
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Every origin some enabled channel lists.
    pub async fn allowed_origins(&self) -> Result<Vec<String>, StoreError> {
        self.run_retrying(|pool| async move {
            sqlx::query_scalar!(
                r#"SELECT DISTINCT unnest(origins) AS "origin!" FROM web_channel WHERE enabled"#
            )
            .fetch_all(&pool)
            .await
        })
        .await
    }

    /// Whether any enabled channel lists `origin`: decides CORS preflights, which carry no
    /// channel.
    pub async fn origin_is_registered(&self, origin: WebOrigin) -> Result<bool, StoreError> {
        self.run_retrying(move |pool| {
            let origin = origin.clone();
            async move {
            sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM web_channel WHERE enabled AND $1 = ANY (origins)) AS "found!""#,
                origin.as_str()
            )
            .fetch_one(&pool)
            .await
        }})
        .await
    }
}
