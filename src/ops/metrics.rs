//! `GET /metrics`: the Prometheus text of [`crate::counters`], with the gauges read at scrape
//! time (pool connections, stream clients, whether the instance listens for new messages), and
//! each channel's queue levels ([`QueueGauges`]).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};

use crate::counters;
use crate::live::Live;
use crate::store::Store;
use crate::store::queue_levels::QueueLevel;
use crate::store::webhooks::OutboxLevel;

pub async fn render(
    store: web::Data<Store>,
    live: web::Data<Live>,
    queue: web::Data<QueueGauges>,
) -> HttpResponse {
    let pool = store.pool();
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    metrics::gauge!("leavemsg_db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("leavemsg_db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("leavemsg_stream_clients").set(live.clients() as f64);
    metrics::gauge!("leavemsg_stream_listening").set(f64::from(u8::from(live.is_listening())));
    let mut text = counters::handle().render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&queue.render(&store).await);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// How long one reading of the queue levels serves every scrape.
const READING_SERVES: Duration = Duration::from_secs(1);

/// `leavemsg_queue_due_messages`, `leavemsg_queue_overdue_messages` and
/// `leavemsg_queue_oldest_due_age_seconds` per channel, read by one query at most once a second
/// however often `/metrics` is scraped: scrapes within a second of a reading get it, and
/// scrapes that arrive while it is being taken wait for it and share it. One per instance
/// (all HTTP workers share it).
///
/// They are written here rather than through the process's recorder: each scrape shows exactly
/// the channels of its reading, with no series left behind by a channel or a reading gone.
/// When the database cannot be read, the three are shown without values (`# HELP` only) and
/// `leavemsg_queue_reads_total{result="failed"}` counts it: the rest of `/metrics` is served
/// as always. The outbox's two gauges are read with them.
#[derive(Default)]
pub struct QueueGauges {
    latest: tokio::sync::Mutex<Option<Reading>>,
    reads_ok: AtomicU64,
    reads_failed: AtomicU64,
}

struct Reading {
    started: Instant,
    /// `None`: the query failed.
    levels: Option<Arc<[QueueLevel]>>,
    /// `None`: the query failed.
    outbox: Option<OutboxLevel>,
}

impl QueueGauges {
    /// The queue metrics as Prometheus text.
    pub async fn render(&self, store: &Store) -> String {
        let (levels, outbox) = self.levels(store).await;
        let mut text = format_queue(
            levels.as_deref(),
            self.reads_ok.load(Ordering::Relaxed),
            self.reads_failed.load(Ordering::Relaxed),
        );
        text.push_str(&format_outbox(outbox));
        text
    }

    /// The levels of a reading at most [`READING_SERVES`] old, taken now if there is none.
    async fn levels(&self, store: &Store) -> (Option<Arc<[QueueLevel]>>, Option<OutboxLevel>) {
        // Held while reading, so that concurrent scrapes wait for this reading, not start
        // their own. The store's deadline bounds the wait.
        let mut latest = self.latest.lock().await;
        if let Some(reading) = latest
            .as_ref()
            .filter(|r| r.started.elapsed() < READING_SERVES)
        {
            return (reading.levels.clone(), reading.outbox);
        }
        let started = Instant::now();
        let levels = match store.queue_levels().await {
            Ok(levels) => {
                self.reads_ok.fetch_add(1, Ordering::Relaxed);
                Some(Arc::from(levels))
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the queue levels for /metrics failed");
                self.reads_failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let outbox = match store.outbox_level().await {
            Ok(outbox) => Some(outbox),
            Err(e) => {
                tracing::warn!(error = %e, "reading the outbox level for /metrics failed");
                self.reads_failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        *latest = Some(Reading {
            started,
            levels: levels.clone(),
            outbox,
        });
        (levels, outbox)
    }
}

/// The outbox gauges (CONTRACT §7.3), described; values only when the level was read.
fn format_outbox(outbox: Option<OutboxLevel>) -> String {
    let mut text = String::new();
    for (name, help, value) in [
        (
            "leavemsg_outbox_pending_deliveries",
            "Webhook and e-mail deliveries waiting to be sent or tried again",
            outbox.map(|o| o.pending.to_string()),
        ),
        (
            "leavemsg_outbox_oldest_pending_age_seconds",
            "Seconds since the longest-waiting webhook or e-mail delivery was queued; 0 when none waits",
            outbox.map(|o| o.oldest_pending_age_seconds.to_string()),
        ),
    ] {
        let _ = writeln!(text, "\n# HELP {name} {help}\n# TYPE {name} gauge");
        if let Some(value) = value {
            let _ = writeln!(text, "{name} {value}");
        }
    }
    text
}

/// The queue families, each described; values only when `levels` were read.
fn format_queue(levels: Option<&[QueueLevel]>, reads_ok: u64, reads_failed: u64) -> String {
    type Value = fn(&QueueLevel) -> String;
    let families: [(&str, &str, Value); 3] = [
        (
            "leavemsg_queue_due_messages",
            "Pending messages whose due time has come, per channel",
            |l| l.due.to_string(),
        ),
        (
            "leavemsg_queue_overdue_messages",
            "Messages not processed whose due time plus the channel's service level (sla-minutes) has passed, per channel",
            |l| l.overdue.to_string(),
        ),
        (
            "leavemsg_queue_oldest_due_age_seconds",
            "Seconds since the earliest due time among a channel's due messages; 0 when none is due",
            |l| l.oldest_due_age_seconds.to_string(),
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in families {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for level in levels.unwrap_or_default() {
            let _ = writeln!(
                text,
                "{name}{{channel=\"{}\"}} {}",
                level.channel,
                value(level)
            );
        }
        text.push('\n');
    }
    let name = "leavemsg_queue_reads_total";
    let _ = writeln!(
        text,
        "# HELP {name} Database reads of the queue levels for /metrics (at most one a second), by result\n\
         # TYPE {name} counter\n\
         {name}{{result=\"ok\"}} {reads_ok}\n\
         {name}{{result=\"failed\"}} {reads_failed}"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChannelId;

    #[test]
    fn each_channel_is_a_series_and_a_failed_read_leaves_only_the_descriptions() {
        let channel = ChannelId::new_random();
        let levels = [QueueLevel {
            channel,
            due: 4,
            overdue: 1,
            oldest_due_age_seconds: 90.5,
        }];
        let text = format_queue(Some(&levels), 7, 2);
        for line in [
            format!("leavemsg_queue_due_messages{{channel=\"{channel}\"}} 4"),
            format!("leavemsg_queue_overdue_messages{{channel=\"{channel}\"}} 1"),
            format!("leavemsg_queue_oldest_due_age_seconds{{channel=\"{channel}\"}} 90.5"),
            "# TYPE leavemsg_queue_due_messages gauge".to_owned(),
            "# HELP leavemsg_queue_oldest_due_age_seconds Seconds since the earliest due time among a channel's due messages; 0 when none is due".to_owned(),
            "leavemsg_queue_reads_total{result=\"ok\"} 7".to_owned(),
            "leavemsg_queue_reads_total{result=\"failed\"} 2".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }

        let failed = format_queue(None, 7, 3);
        assert!(!failed.contains(&channel.to_string()), "{failed}");
        assert_eq!(
            failed.matches("# HELP leavemsg_queue_").count(),
            4,
            "{failed}"
        );
        assert!(failed.contains("leavemsg_queue_reads_total{result=\"failed\"} 3"));
        // Every line is a comment, a sample, or empty.
        for text in [text, failed] {
            for line in text.lines() {
                assert!(
                    line.is_empty()
                        || line.starts_with("# ")
                        || line.starts_with("leavemsg_queue_"),
                    "{line:?}"
                );
            }
        }
    }
}
