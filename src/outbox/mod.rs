//! Sends what the outbox holds (CONTRACT §7): every instance runs a dispatcher, with one worker
//! per webhook endpoint, so a slow or failing endpoint holds up only its own deliveries, and
//! one for e-mail when a mail server is set. A webhook worker, in turns:
//! - takes the stored messages past its endpoint's place (up to [`STORED_ROWS`] intake
//!   statements, leased in the database so other instances leave them alone), sends them
//!   [`PER_ENDPOINT`] at a time, and moves the place on, turning each failed try into a
//!   delivery row to retry;
//! - takes up to [`BATCH`] due delivery rows (agent actions, erasures, retries), sends them
//!   the same way, and records the delivered ones in one statement.
//!
//! Intake never waits for any of this: what is to send was committed with the changes, and the
//! dispatchers' own commits do not wait for the disk (see `store::webhooks`).

pub mod email;
mod webhook;

use std::collections::HashMap;

use futures_util::StreamExt;
use std::time::Duration;

use uuid::Uuid;

use crate::domain::{PublicUrl, Sender, SmtpUrl};
use crate::store::Store;
use crate::store::webhooks::{Delivery, StoredFailure, StoredRange, StoredStep};

/// How webhooks are delivered (CONTRACT §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSettings {
    /// How long one try may take.
    pub timeout: Duration,
    /// The first retry's delay; each next one doubles, up to an hour, with jitter.
    pub retry_base: Duration,
    /// How long a delivery is retried before it gives up.
    pub max_age: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            max_age: Duration::from_secs(86_400),
        }
    }
}

/// E-mail to the team (CONTRACT §7.2). Retries and giving up follow [`WebhookSettings`]'
/// `retry_base` and `max_age`: one outbox, one set of rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSettings {
    /// The mail server; `None`: no e-mail is sent (its `Debug` hides the password).
    pub smtp: Option<SmtpUrl>,
    /// The sender of the e-mails.
    pub from: Sender,
}

/// At most this many tries in flight to one endpoint, per instance.
pub const PER_ENDPOINT: i64 = 4;
/// Deliveries one worker takes at a time (sent PER_ENDPOINT at a time, recorded together).
const BATCH: i64 = 16;
/// Intake statements' worth of stored messages one worker takes at a time (a statement
/// stores up to the writer's batch size).
const STORED_ROWS: i64 = 16;
/// How often a worker with nothing due looks again, and the dispatcher for new endpoints.
const POLL: Duration = Duration::from_millis(500);
/// The longest wait between two tries of one delivery.
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// Delivered events are kept this long at least (for `webhook redeliver`), or the maximum
/// age when that is longer; then they are deleted.
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 86_400);
/// How often the delivered events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Database connections the dispatcher of one instance uses at most (a pool of its own).
const CONNECTIONS: u32 = 2;

/// The dispatcher, on a thread of its own at the lowest CPU priority, with its own runtime and
/// its own few database connections: when the machine is busy, intake and the agents go first
/// and notifications wait in the outbox (never lost, and counted by
/// `leavemsg_outbox_oldest_pending_age_seconds`); with CPU to spare it sends at full speed.
/// Dropping it stops the thread without waiting; [`Dispatcher::stop`] also waits.
pub struct Dispatcher {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dispatcher {
    /// Starts the dispatcher (see [`dispatch`]) for `store`'s database.
    pub fn start(
        store: &Store,
        settings: WebhookSettings,
        email: EmailSettings,
        public_url: PublicUrl,
    ) -> std::io::Result<Dispatcher> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let parent = store.clone();
        let thread = std::thread::Builder::new()
            .name("leavemsg-outbox".to_owned())
            .spawn(move || {
                let lowered = thread_priority::set_current_thread_priority(
                    thread_priority::ThreadPriority::Min,
                );
                if let Err(e) = lowered {
                    tracing::info!(error = ?e, "the outbox runs at normal CPU priority: its thread's could not be lowered");
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "no webhook or e-mail is sent: the outbox's runtime does not start");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let store = parent.on_own_pool(CONNECTIONS);
                    tokio::select! {
                        () = dispatch(store.clone(), settings, email, public_url) => {}
                        _ = stopped => {}
                    }
                    // Its connections end with it: an embedded cluster counts them as clients.
                    let closed = tokio::time::timeout(Duration::from_secs(5), store.pool().close());
                    if closed.await.is_err() {
                        tracing::warn!("the outbox's database connections did not close in 5 s");
                    }
                });
            })?;
        Ok(Dispatcher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the dispatcher and waits for its thread to end (its connections closed).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Runs until aborted: the e-mail worker when a mail server is set (its retries follow the
/// webhook settings), and the webhook workers (see [`webhooks`]).
pub async fn dispatch(
    store: Store,
    settings: WebhookSettings,
    email: EmailSettings,
    public_url: PublicUrl,
) {
    let mailer = email.smtp.and_then(|smtp| {
        match email::Mailer::new(&smtp, email.from.clone(), &public_url) {
            Ok(mailer) => {
                tracing::info!(server = %smtp, from = %email.from, "e-mail to the team goes through this mail server");
                Some(mailer)
            }
            Err(e) => {
                tracing::error!(server = %smtp, error = %e, "no e-mail is sent: the mail server's settings do not work");
                None
            }
        }
    });
    let mail = async {
        if let Some(mailer) = mailer {
            email::worker(store.clone(), mailer, settings).await;
        }
    };
    // In this task, not spawned: aborting the dispatcher ends the e-mail worker too.
    futures_util::future::join(mail, webhooks(store.clone(), settings)).await;
}

/// Runs until aborted: starts a worker for each endpoint, ends a worker whose endpoint was
/// removed, and now and then deletes old events that went through.
/// The endpoint workers, each ended when this is dropped: aborting the dispatcher ends them.
#[derive(Default)]
struct Workers(HashMap<Uuid, tokio::task::JoinHandle<()>>);

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in self.0.values() {
            worker.abort();
        }
    }
}

async fn webhooks(store: Store, settings: WebhookSettings) {
    let client = webhook::client(settings.timeout);
    let mut workers = Workers::default();
    let mut pruned = tokio::time::Instant::now();
    loop {
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = tokio::time::Instant::now();
            match store
                .prune_outbox(KEEP_DELIVERED.max(settings.max_age))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "deleted delivered outbox events"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
            }
        }
        match store.webhook_ids().await {
            Ok(ids) => {
                workers.0.retain(|id, worker| {
                    let keep = ids.contains(id) && !worker.is_finished();
                    if !keep {
                        worker.abort();
                    }
                    keep
                });
                for id in ids {
                    workers.0.entry(id).or_insert_with(|| {
                        tokio::spawn(endpoint_worker(store.clone(), client.clone(), settings, id))
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the webhook endpoints"),
        }
        tokio::time::sleep(POLL * 4).await;
    }
}

async fn endpoint_worker(
    store: Store,
    client: reqwest::Client,
    settings: WebhookSettings,
    endpoint: Uuid,
) {
    // Long enough for every try at PER_ENDPOINT at a time, each taking its whole timeout: a
    // try still under way is never taken by another instance.
    let lease = move |tries: usize| {
        let rounds = tries.div_ceil(usize::try_from(PER_ENDPOINT).unwrap_or(1));
        settings
            .timeout
            .saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
            + Duration::from_secs(30)
    };
    loop {
        let stored = match store.take_stored(endpoint, STORED_ROWS, lease).await {
            Ok(StoredStep::Send(range)) => {
                let outcomes = send_all(&client, range.deliveries.iter().cloned()).await;
                record_stored(&store, &settings, endpoint, &range, &outcomes).await;
                true
            }
            Ok(StoredStep::Moved) => true,
            Ok(StoredStep::Nothing) => false,
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "cannot take stored messages to send");
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
        };
        let batch = match store
            .take_deliveries(endpoint, BATCH, lease(usize::try_from(BATCH).unwrap_or(1)))
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "cannot take webhook deliveries");
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
        };
        if batch.is_empty() {
            if !stored {
                tokio::time::sleep(POLL).await;
            }
            continue;
        }
        let outcomes = send_all(&client, batch).await;
        record(&store, &settings, endpoint, outcomes).await;
    }
}

/// Sends each delivery once, PER_ENDPOINT at a time.
async fn send_all(
    client: &reqwest::Client,
    deliveries: impl IntoIterator<Item = Delivery>,
) -> Vec<(Delivery, Result<(), String>)> {
    futures_util::stream::iter(deliveries)
        .map(|delivery| async move {
            let outcome = webhook::send(client, &delivery).await;
            (delivery, outcome)
        })
        .buffer_unordered(usize::try_from(PER_ENDPOINT).unwrap_or(1))
        .collect()
        .await
}

/// Records a range of stored messages: the endpoint's place moves past it, and each failed
/// try becomes a delivery row, retried like any other.
async fn record_stored(
    store: &Store,
    settings: &WebhookSettings,
    endpoint: Uuid,
    range: &StoredRange,
    outcomes: &[(Delivery, Result<(), String>)],
) {
    let failures: Vec<StoredFailure<'_>> = outcomes
        .iter()
        .filter_map(|(delivery, outcome)| {
            outcome.as_ref().err().map(|error| StoredFailure {
                delivery,
                error,
                retry_in: backoff(settings.retry_base, 1),
            })
        })
        .collect();
    match store
        .stored_sent(endpoint, range, &failures, settings.max_age)
        .await
    {
        Ok(true) => {
            for _ in 0..outcomes.len() - failures.len() {
                crate::counters::webhook_delivery("delivered");
            }
            for failure in &failures {
                crate::counters::webhook_delivery("retry");
                tracing::info!(%endpoint, message_id = failure.delivery.message_id, error = %failure.error, retry_in = ?failure.retry_in, "webhook delivery failed; will retry");
            }
        }
        // Another instance took the range over once the lease ran out, and sends it again.
        Ok(false) => {
            tracing::warn!(%endpoint, messages = outcomes.len(), "the stored messages' lease ran out before they were sent; another dispatcher sends them");
        }
        // The lease runs out and the range is sent again: at least once, never lost.
        Err(e) => {
            tracing::warn!(%endpoint, messages = outcomes.len(), error = %e, "cannot record sent webhooks");
        }
    }
}

/// Records a batch's results: the delivered ones in one statement, each failure on its own.
async fn record(
    store: &Store,
    settings: &WebhookSettings,
    endpoint: Uuid,
    outcomes: Vec<(Delivery, Result<(), String>)>,
) {
    let mut delivered = Vec::new();
    for (delivery, outcome) in outcomes {
        let Some(event) = delivery.event_id else {
            continue;
        };
        match outcome {
            Ok(()) => delivered.push(event),
            Err(error) => {
                let wait = backoff(settings.retry_base, delivery.tries);
                match store
                    .retry_later(endpoint, event, &error, wait, settings.max_age)
                    .await
                {
                    Ok(gave_up) => {
                        crate::counters::webhook_delivery(if gave_up { "failed" } else { "retry" });
                        if gave_up {
                            tracing::warn!(%endpoint, event, %error, "webhook delivery gave up");
                        } else {
                            tracing::info!(%endpoint, event, %error, retry_in = ?wait, "webhook delivery failed; will retry");
                        }
                    }
                    // The lease runs out and the delivery is tried again: at least once.
                    Err(e) => {
                        tracing::warn!(%endpoint, event, error = %e, "cannot record a webhook delivery's result");
                    }
                }
            }
        }
    }
    if delivered.is_empty() {
        return;
    }
    match store.delivered(endpoint, &delivered).await {
        Ok(()) => {
            for _ in &delivered {
                crate::counters::webhook_delivery("delivered");
            }
        }
        // Sent again once their lease runs out: at least once, never lost.
        Err(e) => {
            tracing::warn!(%endpoint, events = delivered.len(), error = %e, "cannot record delivered webhooks");
        }
    }
}

/// `base` doubled per earlier try, at most an hour, then 80-120 % of it so that deliveries
/// that failed together do not all come back together.
fn backoff(base: Duration, tries: i32) -> Duration {
    let doublings = u32::try_from(tries.saturating_sub(1)).unwrap_or(0).min(20);
    let wait = base.saturating_mul(1 << doublings).min(RETRY_MAX);
    wait.mul_f64(rand::random_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour_with_jitter() {
        let base = Duration::from_secs(5);
        for (tries, expected) in [
            (1, 5.0),
            (2, 10.0),
            (3, 20.0),
            (4, 40.0),
            (12, 3600.0),
            (60, 3600.0),
        ] {
            let got = backoff(base, tries).as_secs_f64();
            assert!(
                (expected * 0.8..=expected * 1.2).contains(&got),
                "try {tries}: {got} s, expected about {expected} s"
            );
        }
    }
}
