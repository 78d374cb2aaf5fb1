//! Hearing about newly stored messages: the `leave_message_stored` trigger notifies the ids of
//! each statement's new rows; [`NewMessages`] listens for them on a connection of its own.
//!
//! PostgreSQL wakes every listening session of the database at each commit that notifies, so
//! the caller should listen only while someone wants to know (see `live`).

use sqlx::postgres::PgListener;

use super::{Store, StoreError};

const CHANNEL: &str = "leave_message_stored";

/// A LISTEN on the new-message notifications; dropping it ends the LISTEN.
pub struct NewMessages {
    listener: PgListener,
}

/// What one wait on [`NewMessages::next`] heard.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Ids of messages stored since the last wait (several notifications at once, if queued).
    Stored(Vec<i64>),
    /// The connection was lost and re-established: notifications in between were missed.
    Reconnected,
}

impl Store {
    /// Starts listening for newly stored messages.
    pub async fn listen_for_new_messages(&self) -> Result<NewMessages, StoreError> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen_all([CHANNEL]).await?;
        Ok(NewMessages { listener })
    }
}

impl NewMessages {
    /// Waits for the next notification, and takes every one already queued behind it.
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        let Some(first) = self.listener.try_recv().await? else {
            return Ok(Heard::Reconnected);
        };
        let mut ids = Vec::new();
        let mut next = Some(first);
        while let Some(notification) = next {
            if notification.channel() == CHANNEL {
                ids.extend(message_ids(notification.payload()));
            }
            next = self.listener.next_buffered();
        }
        Ok(Heard::Stored(ids))
    }
}

/// The ids a `leave_message_stored` payload carries: comma-separated (one statement's
/// messages); anything unreadable is skipped.
fn message_ids(payload: &str) -> impl Iterator<Item = i64> + '_ {
    payload.split(',').filter_map(|id| id.trim().parse().ok())
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
