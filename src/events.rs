//! Newly stored messages, fanned out to this instance's live-stream clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{broadcast, watch};

use crate::store::queue::Message;

/// How many events a slow stream client may fall behind before it skips some.
const BACKLOG: usize = 1024;

#[derive(Clone)]
pub struct Events {
    sender: broadcast::Sender<Arc<Message>>,
    clients: Arc<AtomicUsize>,
    closing: Arc<watch::Sender<bool>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(BACKLOG).0,
            clients: Arc::default(),
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
