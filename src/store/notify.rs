//! Hearing about newly stored messages: the `leave_message_stored` trigger notifies the ids of
//! each statement's new rows; [`NewMessages`] listens for them on a connection of its own. The
//! same session hears `leavemsg_agent_access`: the name of an agent that was disabled or got a
//! new key, whose open live streams must stop.
//!
//! PostgreSQL wakes every listening session of the database at each commit that notifies, so
//! the caller should listen only while someone wants to know (see `live`).

use sqlx::postgres::PgListener;

use super::{Store, StoreError};

const CHANNEL: &str = "leave_message_stored";
const AGENT_ACCESS_CHANNEL: &str = "leavemsg_agent_access";

/// A LISTEN on the new-message notifications; dropping it ends the LISTEN.
pub struct NewMessages {
    listener: PgListener,
    /// Message ids heard together with an access change, kept for the next wait so that the
    /// change is acted on first.
    held_back: Vec<i64>,
}

/// What one wait on [`NewMessages::next`] heard.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Ids of messages stored since the last wait (several notifications at once, if queued).
    Stored(Vec<i64>),
    /// Names of agents whose access changed (disabled, new key, renamed, removed).
    AccessChanged(Vec<String>),
    /// The connection was lost and re-established: notifications in between were missed.
    Reconnected,
}

impl Store {
    /// Starts listening for newly stored messages.
    pub async fn listen_for_new_messages(&self) -> Result<NewMessages, StoreError> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen_all([CHANNEL, AGENT_ACCESS_CHANNEL]).await?;
        Ok(NewMessages {
            listener,
            held_back: Vec::new(),
        })
    }
}

impl NewMessages {
    /// Waits for the next notification, and takes every one already queued behind it. When
    /// they include access changes, those come first, and the messages at the next call.
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        if !self.held_back.is_empty() {
            return Ok(Heard::Stored(std::mem::take(&mut self.held_back)));
        }
        let Some(first) = self.listener.try_recv().await? else {
            return Ok(Heard::Reconnected);
        };
        let mut ids = Vec::new();
        let mut agents = Vec::new();
        let mut next = Some(first);
        while let Some(notification) = next {
            match notification.channel() {
                CHANNEL => ids.extend(message_ids(notification.payload())),
                AGENT_ACCESS_CHANNEL => agents.push(notification.payload().to_owned()),
                _ => {}
            }
            next = self.listener.next_buffered();
        }
        if agents.is_empty() {
            return Ok(Heard::Stored(ids));
        }
        self.held_back = ids;
        Ok(Heard::AccessChanged(agents))
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
