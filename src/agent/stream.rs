//! `GET /api/v1/messages/stream`: Server-Sent Events, one `message` event per newly stored
//! message, with heartbeats so proxies keep the connection open.
//!
//! A stream outlives the call that opened it, so its key is checked again whenever the
//! agent's access may have changed (see `live`): a stream of an agent that was disabled, or
//! whose key was replaced, ends before another message reaches it, on every instance.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use tokio::sync::broadcast::error::RecvError;

use super::auth::Agent;
use super::error::{ApiError, ApiErrorBody};
use super::message::Message;
use crate::live::{AccessChange, Live, Subscription};
use crate::store::{MessageRow, Store};

/// A comment line this often keeps idle connections open through proxies, and lets the
/// server notice clients that left.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Live streams one agent may hold on this instance at once: a console per screen and a few
/// tabs, with room to spare; one key opening thousands would hold as many connections.
pub const MAX_STREAMS_PER_AGENT: usize = 8;
/// What a refused stream is told to wait before trying again: about one heartbeat, by which
/// time a stream whose client left has been noticed and let go.
const STREAM_RETRY_AFTER_SECS: u64 = 10;
/// How long a new stream waits for the instance to start listening before it opens anyway.
const LISTEN_PATIENCE: Duration = Duration::from_secs(5);

/// Server-Sent Events: `event: message` with the Message JSON for each newly stored message.
#[utoipa::path(get, path = "/api/v1/messages/stream", tag = "agent",
    security(("agent_key" = [])),
    responses(
        (status = 200, description = "An endless event stream", content_type = "text/event-stream", body = String),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody)))]
pub async fn stream(
    agent: Agent,
    live: web::Data<Live>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let subscription = live
        .subscribe(agent.name.as_str(), MAX_STREAMS_PER_AGENT)
        .ok_or(ApiError::TooManyRequests {
            reason: "this agent already has as many live streams as allowed; close one first",
            retry_after: STREAM_RETRY_AFTER_SECS,
        })?;
    // The instance listens for new messages only while someone watches: "connected" is said
    // once messages stored from now on are sure to arrive.
    live.wait_until_listening(LISTEN_PATIENCE).await;
    // From here on a change of the agent's access is heard; one made since the key was
    // checked may not have been.
    let holder = Holder {
        store: Store::clone(&store),
        agent,
    };
    if !holder.key_still_works().await {
        return Err(ApiError::Unauthorized);
    }
    let heartbeat = tokio::time::interval(HEARTBEAT);
    // First chunk: how long browsers wait before reconnecting, and a hello comment.
    let opening = Bytes::from_static(b"retry: 3000\n: connected\n\n");
    let events = futures_util::stream::unfold(
        (subscription, heartbeat, holder),
        |(mut subscription, mut heartbeat, holder)| async move {
            let chunk = next_chunk(&mut subscription, &mut heartbeat, &holder).await?;
            Some((
                Ok::<_, Infallible>(chunk),
                (subscription, heartbeat, holder),
            ))
        },
    );
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, Infallible>(opening) }),
        events,
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// The agent a stream is for, and what tells whether its key still works.
struct Holder {
    store: Store,
    agent: Agent,
}

impl Holder {
    /// Whether the key the stream was opened with is still the agent's, and the agent enabled.
    /// When the database cannot say, the stream ends (the client reconnects, and its key is
    /// checked then).
    async fn key_still_works(&self) -> bool {
        let current = self
            .store
            .agent_key_is_current(&self.agent.name, &self.agent.key_id)
            .await;
        current.unwrap_or_else(|e| {
            tracing::warn!(error = ?e, "live stream: could not check the agent's key; ending it");
            false
        })
    }

    /// Whether an access change (or missed changes) may concern this stream's agent.
    fn concerned_by(&self, change: &Result<AccessChange, RecvError>) -> bool {
        match change {
            Ok(Some(name)) => **name == *self.agent.name.as_str(),
            Ok(None) | Err(RecvError::Lagged(_)) => true,
            Err(RecvError::Closed) => false,
        }
    }
}

/// The next piece of the stream; `None` ends it (the server is shutting down, or the agent's
/// key no longer works).
async fn next_chunk(
    subscription: &mut Subscription,
    heartbeat: &mut tokio::time::Interval,
    holder: &Holder,
) -> Option<Bytes> {
    loop {
        if *subscription.closing.borrow() {
            return None;
        }
        let chunk = tokio::select! {
            // In this order: an access change is acted on before a message published after it.
            biased;
            _ = subscription.closing.changed() => return None,
            change = subscription.access.recv() => {
                // Closed: the hub is gone with the server.
                if matches!(change, Err(RecvError::Closed))
                    || holder.concerned_by(&change) && !holder.key_still_works().await
                {
                    return None;
                }
                continue;
            }
            received = subscription.receiver.recv() => match received {
                Ok(row) => {
                    let message = Message::from(MessageRow::clone(&row));
                    let json = serde_json::to_string(&message).unwrap_or_default();
                    Bytes::from(format!("event: message\nid: {}\ndata: {json}\n\n", message.id))
                }
                Err(RecvError::Lagged(missed)) => {
                    Bytes::from(format!("event: lagged\ndata: {{\"missed\":{missed}}}\n\n"))
                }
                // The publisher lives as long as the server; this is shutdown.
                Err(RecvError::Closed) => Bytes::from_static(b": closing\n\n"),
            },
            _ = heartbeat.tick() => Bytes::from_static(b": heartbeat\n\n"),
        };
        return Some(chunk);
    }
}
