//! Sends what the outbox holds (CONTRACT §7): every instance runs a dispatcher, with one worker
//! per webhook endpoint, so a slow or failing endpoint holds up only its own deliveries, and
//! one for e-mail when a mail server is set. A webhook worker takes up to [`BATCH`] due
//! deliveries at a time (leased in the database, so other instances leave them alone), sends
//! them [`PER_ENDPOINT`] at a time, and records the delivered ones in one statement. Intake
//! never waits for any of this: the events were committed with the changes, and the
//! dispatchers' own commits do not wait for the disk (see `store::webhooks`).

pub mod email;
mod webhook;

use std::collections::HashMap;

use futures_util::StreamExt;
use std::time::Duration;

use uuid::Uuid;

use crate::domain::{PublicUrl, Sender, SmtpUrl};
use crate::store::Store;

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
/// How often a worker with nothing due looks again, and the dispatcher for new endpoints.
const POLL: Duration = Duration::from_millis(500);
/// The longest wait between two tries of one delivery.
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// Delivered events are kept this long at least (for `webhook redeliver`), or the maximum
/// age when that is longer; then they are deleted.
const KEEP_DELIVERED: Duration = Duration::from_secs(7 * 86_400);
/// How often the delivered events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

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
    // Long enough for a whole batch at PER_ENDPOINT at a time, each try taking its whole
    // timeout: a try still under way is never taken by another instance.
    let rounds = u32::try_from((BATCH + PER_ENDPOINT - 1) / PER_ENDPOINT).unwrap_or(u32::MAX);
    let lease = settings.timeout.saturating_mul(rounds) + Duration::from_secs(30);
    loop {
        let batch = match store.take_deliveries(endpoint, BATCH, lease).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "cannot take webhook deliveries");
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        let outcomes: Vec<_> = futures_util::stream::iter(batch)
            .map(|delivery| {
                let client = client.clone();
                async move {
                    let outcome = webhook::send(&client, &delivery).await;
                    (delivery, outcome)
                }
            })
            .buffer_unordered(usize::try_from(PER_ENDPOINT).unwrap_or(1))
            .collect()
            .await;
        record(&store, &settings, endpoint, outcomes).await;
    }
}

/// Records a batch's results: the delivered ones in one statement, each failure on its own.
async fn record(
    store: &Store,
    settings: &WebhookSettings,
    endpoint: Uuid,
    outcomes: Vec<(crate::store::webhooks::Delivery, Result<(), String>)>,
) {
    let mut delivered = Vec::new();
    for (delivery, outcome) in outcomes {
        let event = delivery.event_id;
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
