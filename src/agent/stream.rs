//! `GET /api/v1/messages/stream`: Server-Sent Events, one `message` event per newly stored
//! message, with heartbeats so proxies keep the connection open. A client that reconnects
//! with `Last-Event-ID` first gets what it missed (see [`catch_up`]).
//!
//! Message ids come from one sequence, but they are not committed in id order: each HTTP
//! worker of each instance writes its own batches on its own connection, and a batch takes
//! its ids when its INSERT runs, not when it commits. So a batch holding id 100 can become
//! visible after another holding id 111 (as long after as the INSERT runs). The
//! stream copes with what it can see: its `id:` field is the highest id it has sent (the
//! message's own id unless a lower one committed late), so a resume never repeats what came
//! before; and the live part skips exactly the ids the replay sent, so a late commit that
//! the replay could not yet see still arrives. What it cannot see is a lower id committing
//! after the client left but before (or just as) it came back: that message is in the list,
//! not replayed. For the same reason the live part of a resumed stream skips ids up to the
//! client's resume point: such a message was sent on the client's earlier connection, and
//! its broadcast can reach this one too when the instance publishes it after the client
//! reconnected (publishing trails the commit by a read).
//!
//! A stream outlives the call that opened it, so its key is checked again whenever the
//! agent's access may have changed (see `live`): a stream of an agent that was disabled, or
//! whose key was replaced, ends before another message reaches it, on every instance.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::broadcast::error::RecvError;

use super::auth::Agent;
use super::error::{ApiError, ApiErrorBody};
use crate::live::{AccessChange, Live, Subscription};
use crate::store::{MessageRow, Store};
use crate::wire::Message;

/// A comment line this often keeps idle connections open through proxies, and lets the
/// server notice clients that left.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Live streams one agent may hold on this instance at once: a console per screen and a few
/// tabs, with room to spare; one key opening thousands would hold as many connections.
pub const MAX_STREAMS_PER_AGENT: usize = 8;
/// Most missed messages a reconnecting client is sent; beyond them it is told to reload.
pub const MAX_REPLAY: usize = 1000;
/// What a refused stream is told to wait before trying again: about one heartbeat, by which
/// time a stream whose client left has been noticed and let go.
const STREAM_RETRY_AFTER_SECS: u64 = 10;
/// How long a new stream waits for the instance to start listening before it opens anyway.
const LISTEN_PATIENCE: Duration = Duration::from_secs(5);
/// The header a client that reconnects names the last id it saw with.
const LAST_EVENT_ID: &str = "last-event-id";

/// Server-Sent Events: `event: message` with the Message JSON for each newly stored message.
///
/// Events: `message` (`id:` the stream's position, `data:` the Message JSON); `lagged`
/// (`data: {"missed":N}`: the client fell behind and N messages were skipped; reload the
/// list); `reset` (`data: {"reason":…}`: what the client missed cannot be replayed, because
/// more than 1,000 messages were stored since `Last-Event-ID` (`too_many_missed`), the id is
/// not a message id (`unknown_position`) or the database did not answer (`unavailable`);
/// reload the list). After any replay a block with the stream's position (`id:`, when there
/// are messages) and the comment `: connected` follows; from then on messages stored are
/// sure to arrive. A message whose id is lower than one already sent (ids are not committed
/// in id order) is still sent, with the higher id as its `id:`.
#[utoipa::path(get, path = "/api/v1/messages/stream", tag = "agent",
    security(("agent_key" = [])),
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The last `id:` this client received: the stream first sends every \
            message stored after it (up to 1,000, in id order; beyond that `event: reset`), \
            then the live ones. Browsers' EventSource sends it by itself when it reconnects. \
            An id greater than the newest message replays nothing; a value that is not a \
            non-negative integer gets `event: reset`.")),
    responses(
        (status = 200, description = "An endless event stream", content_type = "text/event-stream", body = String),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody)))]
pub async fn stream(
    agent: Agent,
    req: HttpRequest,
    live: web::Data<Live>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let resume = Resume::from_headers(req.headers());
    // Subscribed before anything is read, so a message committed while the missed ones are
    // read is either among them or arrives live (or both: the live copy is then skipped).
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
    let feed = Feed {
        holder,
        store: Store::clone(&store),
        resume: Some(resume),
        subscription,
        heartbeat: tokio::time::interval(HEARTBEAT),
        replayed: Vec::new(),
        seen_through: None,
        position: None,
    };
    // First chunk, at once: how long browsers wait before reconnecting.
    let opening = Bytes::from_static(b"retry: 3000\n\n");
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), feed))
    });
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

/// Where a connecting client says it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// No `Last-Event-ID` (or an empty one): a first connection, nothing to replay.
    Fresh,
    /// Everything stored after this message id was missed.
    After(i64),
    /// A `Last-Event-ID` that is no id of ours (not a non-negative integer that fits).
    Unknown,
}

impl Resume {
    fn from_headers(headers: &HeaderMap) -> Resume {
        match headers.get(LAST_EVENT_ID) {
            None => Resume::Fresh,
            Some(value) => Resume::parse(value.as_bytes()),
        }
    }

    fn parse(value: &[u8]) -> Resume {
        let Ok(text) = std::str::from_utf8(value) else {
            return Resume::Unknown;
        };
        let text = text.trim();
        if text.is_empty() {
            return Resume::Fresh;
        }
        // Digits only: no sign, no spaces inside; larger than any id is no id either.
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Resume::Unknown;
        }
        text.parse().map_or(Resume::Unknown, Resume::After)
    }
}

/// One client's stream: first what it missed, then the live messages.
struct Feed {
    holder: Holder,
    store: Store,
    /// Taken by the first chunk, which replays.
    resume: Option<Resume>,
    subscription: Subscription,
    heartbeat: tokio::time::Interval,
    /// Ids the replay sent, ascending: their live copies are not sent again.
    replayed: Vec<i64>,
    /// The resume point, when the client gave one: live copies of messages up to it were
    /// seen on an earlier connection (their broadcast may come after this one subscribed).
    seen_through: Option<i64>,
    /// The highest message id sent, which the client will name when it reconnects.
    position: Option<i64>,
}

impl Feed {
    /// The next piece of the stream; `None` ends it (the server is shutting down, or the
    /// agent's key no longer works).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if *self.subscription.closing.borrow() {
            return None;
        }
        if let Some(resume) = self.resume.take() {
            let opening = catch_up(&self.store, resume).await;
            self.replayed = opening.replayed;
            self.seen_through = opening.seen_through;
            self.position = opening.position;
            return Some(opening.chunk);
        }
        loop {
            let chunk = tokio::select! {
                // In this order: an access change is acted on before a message published
                // after it.
                biased;
                _ = self.subscription.closing.changed() => return None,
                change = self.subscription.access.recv() => {
                    // Closed: the hub is gone with the server.
                    if matches!(change, Err(RecvError::Closed))
                        || self.holder.concerned_by(&change) && !self.holder.key_still_works().await
                    {
                        return None;
                    }
                    continue;
                }
                received = self.subscription.receiver.recv() => match received {
                    Ok(row) if self.replayed.binary_search(&row.id).is_ok() => continue,
                    Ok(row) if self.seen_through.is_some_and(|s| row.id <= s) => continue,
                    Ok(row) => self.message_event(MessageRow::clone(&row)),
                    Err(RecvError::Lagged(missed)) => {
                        Bytes::from(format!("event: lagged\ndata: {{\"missed\":{missed}}}\n\n"))
                    }
                    // The publisher lives as long as the server; this is shutdown.
                    Err(RecvError::Closed) => Bytes::from_static(b": closing\n\n"),
                },
                _ = self.heartbeat.tick() => Bytes::from_static(b": heartbeat\n\n"),
            };
            return Some(chunk);
        }
    }

    fn message_event(&mut self, row: MessageRow) -> Bytes {
        let position = self.position.map_or(row.id, |p| p.max(row.id));
        self.position = Some(position);
        Bytes::from(message_event(&row, position))
    }
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

fn message_event(row: &MessageRow, position: i64) -> String {
    let message = Message::from(row.clone());
    let json = serde_json::to_string(&message).unwrap_or_default();
    format!("event: message\nid: {position}\ndata: {json}\n\n")
}

fn reset_event(reason: &str) -> String {
    format!("event: reset\ndata: {{\"reason\":\"{reason}\"}}\n\n")
}

/// What a stream sends before the live messages.
#[derive(Debug, Default)]
struct Opening {
    /// The replayed messages (or a reset), then the position and `: connected`.
    chunk: Bytes,
    replayed: Vec<i64>,
    seen_through: Option<i64>,
    position: Option<i64>,
}

/// Reads what a client resuming at `resume` missed. Runs after the stream subscribed: every
/// message committed from then on arrives live, and one also read here is skipped there.
/// Each read goes through the store's deadline; a failed read is an `event: reset`, never a
/// broken stream.
async fn catch_up(store: &Store, resume: Resume) -> Opening {
    let newest = match store.newest_message_id().await {
        Ok(newest) => newest,
        Err(e) => {
            tracing::warn!(error = ?e, "live stream: could not read the newest message id");
            let mut text = String::new();
            if resume != Resume::Fresh {
                text.push_str(&reset_event("unavailable"));
            }
            text.push_str(": connected\n\n");
            return Opening {
                chunk: Bytes::from(text),
                ..Opening::default()
            };
        }
    };
    let mut text = String::new();
    let mut replayed = Vec::new();
    // An id from the future names nothing this database holds: nothing below it is skipped.
    let seen_through = match resume {
        Resume::After(after) => newest.map(|n| after.min(n)),
        Resume::Fresh | Resume::Unknown => None,
    };
    match resume {
        Resume::Fresh => {}
        Resume::Unknown => text.push_str(&reset_event("unknown_position")),
        // Caught up, or an id from the future (another database, or the newest was
        // erased): nothing to replay; the position below moves the client to ours.
        Resume::After(after) if newest.is_none_or(|n| after >= n) => {}
        Resume::After(after) => {
            let limit = i64::try_from(MAX_REPLAY + 1).unwrap_or(i64::MAX);
            match store.messages_stored_after(after, limit).await {
                Ok(rows) if rows.len() > MAX_REPLAY => {
                    text.push_str(&reset_event("too_many_missed"));
                }
                Ok(rows) => {
                    for row in &rows {
                        text.push_str(&message_event(row, row.id));
                    }
                    replayed = rows.iter().map(|r| r.id).collect();
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "live stream: could not replay missed messages");
                    text.push_str(&reset_event("unavailable"));
                }
            }
        }
    }
    // Rows come in id order; one committed after the newest was read may be among them.
    let position = newest.max(replayed.last().copied());
    if let Some(position) = position {
        text.push_str(&format!("id: {position}\n"));
    }
    text.push_str(": connected\n\n");
    Opening {
        chunk: Bytes::from(text),
        replayed,
        seen_through,
        position,
    }
}

#[cfg(test)]
mod tests {
    use super::Resume;

    #[test]
    fn last_event_id_is_a_non_negative_id_or_no_position() {
        for (value, expected) in [
            (&b""[..], Resume::Fresh),
            (b"   ", Resume::Fresh),
            (b"0", Resume::After(0)),
            (b"42", Resume::After(42)),
            (b" 42 ", Resume::After(42)),
            (b"007", Resume::After(7)),
            (b"9223372036854775807", Resume::After(i64::MAX)),
            (b"9223372036854775808", Resume::Unknown),
            (b"99999999999999999999999999999999", Resume::Unknown),
            (b"-1", Resume::Unknown),
            (b"+1", Resume::Unknown),
            (b"1e3", Resume::Unknown),
            (b"4 2", Resume::Unknown),
            (b"abc", Resume::Unknown),
            (b"\xff\xfe", Resume::Unknown),
        ] {
            assert_eq!(
                Resume::parse(value),
                expected,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
