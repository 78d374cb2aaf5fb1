//! LISTEN for newly stored messages (the `leave_message_stored` trigger) and publish them to
//! this instance's stream clients, whichever instance stored them.
//!
//! An instance listens only while it has stream clients. PostgreSQL wakes every listening
//! session of the database at each commit that notifies; with nobody listening, storing a
//! message wakes nobody (measured: a third more messages a second from one connection).

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

/// Runs until aborted: while this instance has stream clients, listens, fetches each
/// announced message and publishes it. Survives database restarts; after a reconnection,
/// messages stored meanwhile are replayed.
pub async fn listen(pool: PgPool, events: Events) {
    // The newest message published (or, at first, stored) while clients were watching.
    let mut last_id: Option<i64> = None;
    loop {
        if events.clients() == 0 {
            // Nobody watching here: hold no LISTEN (the last one ended with its connection).
            events.set_listening(false);
            last_id = None;
            events.wait_for_clients().await;
            continue;
        }
        let mut listener = match connect(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "live stream: cannot listen; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        match last_id {
            Some(after) => catch_up(&pool, &events, after, &mut last_id).await,
            // Where a replay after a lost connection would start.
            None => last_id = newest_id(&pool).await,
        }
        events.set_listening(true);
        loop {
            match listener.try_recv().await {
                Ok(Some(first)) => {
                    let mut ids = Vec::new();
                    let mut next = Some(first);
                    while let Some(notification) = next {
                        if notification.channel() == CHANNEL {
                            ids.extend(message_ids(notification.payload()));
                        }
                        next = listener.next_buffered();
                    }
                    publish(&pool, &events, &ids, &mut last_id).await;
                    if events.clients() == 0 {
                        // The last client left; stop listening (dropping the listener).
                        break;
                    }
                }
                Ok(None) => {
                    tracing::warn!("live stream: connection lost and re-established");
                    if let Some(after) = last_id {
                        catch_up(&pool, &events, after, &mut last_id).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live stream: listener failed; reconnecting");
                    events.set_listening(false);
                    tokio::time::sleep(RETRY_AFTER).await;
                    break;
                }
            }
        }
    }
}

async fn newest_id(pool: &PgPool) -> Option<i64> {
    let newest = super::within_deadline(queue::newest_id(pool)).await;
    newest.unwrap_or_else(|e| {
        tracing::warn!(error = ?e, "live stream: could not read the newest message id");
        None
    })
}

/// The ids a `leave_message_stored` payload carries: comma-separated (one statement's
/// messages); anything unreadable is skipped.
fn message_ids(payload: &str) -> impl Iterator<Item = i64> + '_ {
    payload.split(',').filter_map(|id| id.trim().parse().ok())
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL]).await?;
    Ok(listener)
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
