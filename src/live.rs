//! Live fan-out: newly stored messages, whichever instance stored them, handed to this
//! instance's live-stream clients. [`Live`] is the hub the clients subscribe to; [`listen`]
//! is the task that hears about new messages from the database and publishes them.
//!
//! The listener also hears when an agent's access changes (disabled, new key): [`Live`] passes
//! the agent's name to the streams, which check their key again and end if it no longer works.
//! After a lost connection, or when listening starts, every stream checks (`None`), since a
//! change may have gone unheard.
//!
//! An instance listens only while it has stream clients. PostgreSQL wakes every listening
//! session of the database at each commit that notifies; with nobody listening, storing a
//! message wakes nobody (measured: a third more messages a second from one connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};

use crate::limits::{Slot, Slots};
use crate::store::notify::Heard;
use crate::store::{MessageRow, Store};

/// How many events a slow stream client may fall behind before it skips some.
const BACKLOG: usize = 1024;

#[derive(Clone)]
pub struct Live {
    sender: broadcast::Sender<Arc<MessageRow>>,
    clients: Arc<AtomicUsize>,
    /// Stream clients per agent name, so one agent (or one stolen key) cannot hold them all.
    per_agent: Slots,
    /// Told when a client arrives, so the listener can start listening.
    arrived: Arc<Notify>,
    /// Whether the listener is hearing about new messages now.
    listening: Arc<watch::Sender<bool>>,
    closing: Arc<watch::Sender<bool>>,
    /// Agents whose access changed: `Some(name)`, or `None` for "any of them may have".
    access: broadcast::Sender<AccessChange>,
}

/// An agent whose access changed, or `None`: any agent's may have.
pub type AccessChange = Option<Arc<str>>;

/// Access changes a stream may fall behind by before it checks its key anyway.
const ACCESS_BACKLOG: usize = 64;

impl Default for Live {
    fn default() -> Self {
        Live {
            sender: broadcast::channel(BACKLOG).0,
            clients: Arc::default(),
            per_agent: Slots::default(),
            arrived: Arc::default(),
            listening: Arc::new(watch::channel(false).0),
            closing: Arc::new(watch::channel(false).0),
            access: broadcast::channel(ACCESS_BACKLOG).0,
        }
    }
}

impl Live {
    pub fn publish(&self, message: MessageRow) {
        // No subscribers is fine: nobody is watching.
        let _ = self.sender.send(Arc::new(message));
    }

    /// A new client of `agent`'s; `None` when that agent already has `most` streams here.
    pub fn subscribe(&self, agent: &str, most: usize) -> Option<Subscription> {
        let slot = self.per_agent.take(agent, most, usize::MAX).ok()?;
        self.clients.fetch_add(1, Ordering::Relaxed);
        self.arrived.notify_one();
        Some(Subscription {
            receiver: self.sender.subscribe(),
            access: self.access.subscribe(),
            closing: self.closing.subscribe(),
            clients: self.clients.clone(),
            _slot: slot,
        })
    }

    /// Tells the streams that `agent`'s access changed (`None`: any agent's may have).
    pub fn access_changed(&self, agent: Option<&str>) {
        // No subscribers is fine: no stream to end.
        let _ = self.access.send(agent.map(Arc::from));
    }

    /// Ends every stream: the server is shutting down and should not wait for them.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Stream clients connected to this instance now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Returns once at least one stream client is connected.
    async fn wait_for_clients(&self) {
        while self.clients() == 0 {
            self.arrived.notified().await;
        }
    }

    /// Whether newly stored messages reach this instance now (only while it has clients).
    pub fn is_listening(&self) -> bool {
        *self.listening.borrow()
    }

    /// Set by the listener: whether newly stored messages reach this instance now.
    fn set_listening(&self, listening: bool) {
        self.listening.send_replace(listening);
    }

    /// Waits up to `patience` until newly stored messages reach this instance. Past it (the
    /// database is unreachable) messages stored meanwhile are replayed once it answers again.
    pub async fn wait_until_listening(&self, patience: Duration) {
        let mut listening = self.listening.subscribe();
        let _ = tokio::time::timeout(patience, listening.wait_for(|on| *on)).await;
    }
}

/// One client's view of the events; dropping it (the client left) uncounts it.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<MessageRow>>,
    /// Agents whose access changed since the subscription began.
    pub access: broadcast::Receiver<AccessChange>,
    /// Turns true when the server shuts down.
    pub closing: watch::Receiver<bool>,
    clients: Arc<AtomicUsize>,
    /// The agent's stream slot, given back with the subscription.
    _slot: Slot,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pause before retrying when the database cannot be reached.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// At most this many missed messages are replayed after a reconnection.
const CATCH_UP_LIMIT: i64 = 1000;

/// Runs until aborted: while this instance has stream clients, listens, reads each announced
/// message and publishes it. Survives database restarts; after a reconnection, messages stored
/// meanwhile are replayed.
pub async fn listen(store: Store, live: Live) {
    // The newest message published (or, at first, stored) while clients were watching.
    let mut last_id: Option<i64> = None;
    loop {
        if live.clients() == 0 {
            // Nobody watching here: hold no LISTEN (the last one ended with its connection).
            live.set_listening(false);
            last_id = None;
            live.wait_for_clients().await;
            continue;
        }
        let mut new_messages = match store.listen_for_new_messages().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "live stream: cannot listen; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        // Changes made before the LISTEN began went unheard: every stream checks its key
        // before any message is published to it.
        live.access_changed(None);
        match last_id {
            Some(after) => catch_up(&store, &live, after, &mut last_id).await,
            // Where a replay after a lost connection would start.
            None => last_id = newest_id(&store).await,
        }
        live.set_listening(true);
        loop {
            match new_messages.next().await {
                Ok(Heard::AccessChanged(agents)) => {
                    for agent in agents {
                        live.access_changed(Some(&agent));
                    }
                }
                Ok(Heard::Stored(ids)) => {
                    publish(&store, &live, ids, &mut last_id).await;
                    if live.clients() == 0 {
                        // The last client left; stop listening (dropping the listener).
                        break;
                    }
                }
                Ok(Heard::Reconnected) => {
                    tracing::warn!("live stream: connection lost and re-established");
                    live.access_changed(None);
                    if let Some(after) = last_id {
                        catch_up(&store, &live, after, &mut last_id).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live stream: listener failed; reconnecting");
                    live.set_listening(false);
                    tokio::time::sleep(RETRY_AFTER).await;
                    break;
                }
            }
        }
    }
}

async fn newest_id(store: &Store) -> Option<i64> {
    store.newest_message_id().await.unwrap_or_else(|e| {
        tracing::warn!(error = ?e, "live stream: could not read the newest message id");
        None
    })
}

async fn publish(store: &Store, live: &Live, ids: Vec<i64>, last_id: &mut Option<i64>) {
    if ids.is_empty() {
        return;
    }
    if live.clients() == 0 {
        // Nobody is watching on this instance: no need to read the messages back.
        if let Some(max) = ids.iter().max() {
            *last_id = Some(last_id.map_or(*max, |l| l.max(*max)));
        }
        return;
    }
    match store.messages_by_ids(ids).await {
        Ok(messages) => publish_all(live, messages, last_id),
        Err(e) => tracing::warn!(error = ?e, "live stream: could not read announced messages"),
    }
}

/// Replays messages with an id above `after`. Ids are not committed in id order (each writer
/// takes its ids when its INSERT runs), so a lower id that committed while the connection was
/// down is not among them: those clients see it in the list.
async fn catch_up(store: &Store, live: &Live, after: i64, last_id: &mut Option<i64>) {
    match store.messages_stored_after(after, CATCH_UP_LIMIT).await {
        Ok(messages) => publish_all(live, messages, last_id),
        Err(e) => tracing::warn!(error = ?e, "live stream: could not replay missed messages"),
    }
}

fn publish_all(live: &Live, messages: Vec<MessageRow>, last_id: &mut Option<i64>) {
    for message in messages {
        *last_id = Some(last_id.map_or(message.id, |l| l.max(message.id)));
        live.publish(message);
    }
}
