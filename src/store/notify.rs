//! LISTEN for newly stored messages (the `leave_message_stored` trigger) and publish them to
//! this instance's stream clients, whichever instance stored them.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use std::sync::Arc;

use super::queue;
use crate::domain::ChannelId;
use crate::events::Events;
use crate::visitor::token_cache::TokenCache;

pub const CHANNEL: &str = "leave_message_stored";
/// A visitor token (hex SHA-256) was replaced or deleted.
pub const TOKEN_REVOKED: &str = "leavemsg_token_revoked";
/// A web channel (its id) was disabled or changed.
pub const CHANNEL_CHANGED: &str = "leavemsg_channel_changed";
/// Pause before retrying when the database cannot be reached.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// At most this many missed messages are replayed after a reconnection.
const CATCH_UP_LIMIT: i64 = 1000;

/// Runs until aborted: listens, fetches each announced message, publishes it. Survives
/// database restarts; after a reconnection, messages stored meanwhile are replayed.
pub async fn listen(pool: PgPool, events: Events, tokens: Arc<TokenCache>) {
    let mut last_id: Option<i64> = None;
    loop {
        // Whatever was announced while not listening is unknown: forget every cached token.
        tokens.clear();
        let mut listener = match connect(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "live stream: cannot listen; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        if let Some(after) = last_id {
            catch_up(&pool, &events, after, &mut last_id).await;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(first)) => {
                    let mut ids = Vec::new();
                    let mut next = Some(first);
                    while let Some(notification) = next {
                        match notification.channel() {
                            CHANNEL => ids.extend(message_ids(notification.payload())),
                            TOKEN_REVOKED => revoke_token(&tokens, notification.payload()),
                            CHANNEL_CHANGED => match ChannelId::parse(notification.payload()) {
                                Ok(channel) => tokens.revoke_channel(channel),
                                Err(_) => tokens.clear(),
                            },
                            _ => {}
                        }
                        next = listener.next_buffered();
                    }
                    publish(&pool, &events, &ids, &mut last_id).await;
                }
                Ok(None) => {
                    tracing::warn!("live stream: connection lost and re-established");
                    tokens.clear();
                    if let Some(after) = last_id {
                        catch_up(&pool, &events, after, &mut last_id).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live stream: listener failed; reconnecting");
                    tokio::time::sleep(RETRY_AFTER).await;
                    break;
                }
            }
        }
    }
}

/// The ids a `leave_message_stored` payload carries: comma-separated (one statement's
/// messages); anything unreadable is skipped.
fn message_ids(payload: &str) -> impl Iterator<Item = i64> + '_ {
    payload.split(',').filter_map(|id| id.trim().parse().ok())
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([CHANNEL, TOKEN_REVOKED, CHANNEL_CHANGED])
        .await?;
    Ok(listener)
}

fn revoke_token(tokens: &TokenCache, hex: &str) {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(hash) => tokens.revoke(&hash),
        None => tokens.clear(),
    }
}

async fn publish(pool: &PgPool, events: &Events, ids: &[i64], last_id: &mut Option<i64>) {
    if ids.is_empty() {
        return;
    }
    if events.clients() == 0 {
        // Nobody is watching on this instance: no need to read the messages back.
        if let Some(max) = ids.iter().max() {
            *last_id = Some(last_id.map_or(*max, |l| l.max(*max)));
        }
        return;
    }
    match super::within_deadline(queue::get_many(pool, ids)).await {
        Ok(messages) => {
            for message in messages {
                *last_id = Some(last_id.map_or(message.id, |l| l.max(message.id)));
                events.publish(message);
            }
        }
        Err(e) => tracing::warn!(error = ?e, "live stream: could not read announced messages"),
    }
}

async fn catch_up(pool: &PgPool, events: &Events, after: i64, last_id: &mut Option<i64>) {
    match super::within_deadline(queue::stored_after(pool, after, CATCH_UP_LIMIT)).await {
        Ok(messages) => {
            for message in messages {
                *last_id = Some(last_id.map_or(message.id, |l| l.max(message.id)));
                events.publish(message);
            }
        }
        Err(e) => tracing::warn!(error = ?e, "live stream: could not replay missed messages"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_carries_one_id_or_many() {
        assert_eq!(message_ids("42").collect::<Vec<_>>(), [42]);
        assert_eq!(message_ids("1,2,300").collect::<Vec<_>>(), [1, 2, 300]);
        assert_eq!(message_ids("7,x,,8").collect::<Vec<_>>(), [7, 8]);
        assert_eq!(message_ids("").count(), 0);
    }
}
