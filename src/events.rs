//! Newly stored messages, fanned out to this instance's live-stream clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, broadcast, watch};

use crate::store::queue::Message;

/// How many events a slow stream client may fall behind before it skips some.
const BACKLOG: usize = 1024;

#[derive(Clone)]
pub struct Events {
    sender: broadcast::Sender<Arc<Message>>,
    clients: Arc<AtomicUsize>,
    /// Told when a client arrives, so the listener can start listening.
    arrived: Arc<Notify>,
    /// Whether the listener is hearing about new messages now.
    listening: Arc<watch::Sender<bool>>,
    closing: Arc<watch::Sender<bool>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(BACKLOG).0,
            clients: Arc::default(),
            arrived: Arc::default(),
            listening: Arc::new(watch::channel(false).0),
            closing: Arc::new(watch::channel(false).0),
        }
    }
}

impl Events {
    pub fn publish(&self, message: Message) {
        // No subscribers is fine: nobody is watching.
        let _ = self.sender.send(Arc::new(message));
    }

    pub fn subscribe(&self) -> Subscription {
        self.clients.fetch_add(1, Ordering::Relaxed);
        self.arrived.notify_one();
        Subscription {
            receiver: self.sender.subscribe(),
            closing: self.closing.subscribe(),
            clients: self.clients.clone(),
        }
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
    pub async fn wait_for_clients(&self) {
        while self.clients() == 0 {
            self.arrived.notified().await;
        }
    }

    /// Whether newly stored messages reach this instance now (only while it has clients).
    pub fn is_listening(&self) -> bool {
        *self.listening.borrow()
    }

    /// Set by the listener: whether newly stored messages reach this instance now.
    pub fn set_listening(&self, listening: bool) {
        self.listening.send_replace(listening);
    }

    /// Waits up to `patience` until newly stored messages reach this instance. Past it (the
    /// database is unreachable) messages stored meanwhile are replayed once it answers again.
    pub async fn wait_until_listening(&self, patience: std::time::Duration) {
        let mut listening = self.listening.subscribe();
        let _ = tokio::time::timeout(patience, listening.wait_for(|on| *on)).await;
    }
}

/// One client's view of the events; dropping it (the client left) uncounts it.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<Message>>,
    /// Turns true when the server shuts down.
    pub closing: watch::Receiver<bool>,
    clients: Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }
}
