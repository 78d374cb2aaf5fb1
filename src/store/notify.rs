//! LISTEN for newly stored messages (the `leave_message_stored` trigger) and publish them to
//! this instance's stream clients, whichever instance stored them.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::queue;
use crate::events::Events;

pub const CHANNEL: &str = "leave_message_stored";
/// Pause before retrying when the database cannot be reached.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// At most this many missed messages are replayed after a reconnection.
const CATCH_UP_LIMIT: i64 = 1000;

/// Runs until aborted: listens, fetches each announced message, publishes it. Survives
/// database restarts; after a reconnection, messages stored meanwhile are replayed.
pub async fn listen(pool: PgPool, events: Events) {
    let mut last_id: Option<i64> = None;
    loop {
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
                    let mut ids: Vec<i64> = first.payload().parse().into_iter().collect();
                    while let Some(next) = listener.next_buffered() {
                        ids.extend(next.payload().parse::<i64>());
                    }
                    publish(&pool, &events, &ids, &mut last_id).await;
                }
                Ok(None) => {
                    tracing::warn!("live stream: connection lost and re-established");
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

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn publish(pool: &PgPool, events: &Events, ids: &[i64], last_id: &mut Option<i64>) {
    if ids.is_empty() {
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
