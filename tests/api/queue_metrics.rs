//! CONTRACT §3.1: `/metrics` reports each channel's due and overdue messages and the age of
//! its oldest due one, read from the database at most once a second.

use std::time::{Duration, Instant};

use leavemsg::store::channels::{CallbackSettings, NewChannel};

use crate::database_faults::private_cluster;
use crate::helpers::*;

const API: &str = "/api/v1/messages";

async fn metrics_text(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The value of the series `series` (name and labels, as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// A channel's three queue gauges, if the text has them.
fn levels(text: &str, channel: &str) -> Option<(f64, f64, f64)> {
    let of = |name: &str| {
        value(
            text,
            &format!("leavemsg_queue_{name}{{channel=\"{channel}\"}}"),
        )
    };
    Some((
        of("due_messages")?,
        of("overdue_messages")?,
        of("oldest_due_age_seconds")?,
    ))
}

/// Scrapes until `wanted` holds for the text (a reading serves for a second, so a change shows
/// in one taken after it); returns the last text.
async fn scrape_until(app: &TestApp, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics_text(app).await;
        if wanted(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reads(text: &str, result: &str) -> f64 {
    value(
        text,
        &format!("leavemsg_queue_reads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or_else(|| panic!("no reads_total {result}:\n{text}"))
}

/// Moves a message's due time to `minutes` from the database's now (negative: in the past).
async fn due_in(app: &TestApp, id: i64, minutes: i32) {
    sqlx::query(
        "UPDATE leave_message SET due_at = now() + make_interval(mins => $2) WHERE id = $1",
    )
    .bind(id)
    .bind(minutes)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn due_overdue_and_oldest_age_are_counted_per_channel() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let standard = app.create_channel().await; // service level 240 minutes
    let strict = app
        .store
        .create_channel(&NewChannel {
            name: "Strict",
            origins: &[],
            cross_site: false,
            prompt: None,
            callbacks: CallbackSettings {
                sla_minutes: 30,
                ..CallbackSettings::DEFAULT
            },
            notify_emails: &[],
        })
        .await
        .unwrap()
        .to_string();
    let quiet = app.create_channel().await;

    let s = app.insert_messages(&standard, 5).await;
    due_in(&app, s[0], -10).await; // due
    due_in(&app, s[1], -300).await; // due and overdue: the oldest due
    due_in(&app, s[2], 60).await; // not yet due
    due_in(&app, s[3], -400).await; // overdue, but assigned: not due
    due_in(&app, s[4], -500).await; // processed: neither
    for id in [s[3], s[4]] {
        let resp = app
            .agent_post(&key, &format!("{API}/{id}/claim"), None)
            .await;
        assert_eq!(resp.status(), 200);
    }
    let process = serde_json::json!({"outcome": "spam"});
    let resp = app
        .agent_post(&key, &format!("{API}/{}/process", s[4]), Some(process))
        .await;
    assert_eq!(resp.status(), 200);
    let t = app.insert_messages(&strict, 2).await;
    due_in(&app, t[0], -31).await; // due and overdue at 30 minutes
    due_in(&app, t[1], -29).await; // due, not yet overdue

    let expected = |text: &str| {
        let standard = levels(text, &standard)?;
        let strict = levels(text, &strict)?;
        let quiet = levels(text, &quiet)?;
        let aged = |age: f64, minutes: f64| (minutes * 60.0..minutes * 60.0 + 120.0).contains(&age);
        Some(
            (standard.0, standard.1) == (2.0, 2.0)
                && aged(standard.2, 300.0)
                && (strict.0, strict.1) == (2.0, 1.0)
                && aged(strict.2, 31.0)
                && quiet == (0.0, 0.0, 0.0),
        )
    };
    let text = scrape_until(&app, |text| expected(text) == Some(true)).await;
    assert_eq!(expected(&text), Some(true), "{text}");
    for family in ["due_messages", "overdue_messages", "oldest_due_age_seconds"] {
        assert!(
            text.contains(&format!("# HELP leavemsg_queue_{family} ")),
            "{family}: {text}"
        );
    }

    // A claimed message is no longer due; the next oldest is.
    let resp = app
        .agent_post(&key, &format!("{API}/{}/claim", s[1]), None)
        .await;
    assert_eq!(resp.status(), 200);
    let claimed = |text: &str| {
        levels(text, &standard).is_some_and(|(due, overdue, age)| {
            (due, overdue) == (1.0, 2.0) && (600.0..720.0).contains(&age)
        })
    };
    let text = scrape_until(&app, claimed).await;
    assert!(claimed(&text), "{text}");
}

#[tokio::test]
async fn scrapes_within_a_second_share_one_query() {
    let app = spawn_app().await;
    app.create_channel().await;
    let first = metrics_text(&app).await;
    let before = reads(&first, "ok");
    assert!(before >= 1.0, "{first}");

    let started = Instant::now();
    let concurrent = (0..8).map(|_| metrics_text(&app));
    futures_util::future::join_all(concurrent).await;
    let mut last = String::new();
    for _ in 0..12 {
        last = metrics_text(&app).await;
    }
    let elapsed = started.elapsed();
    let queries = reads(&last, "ok") - before;
    // A query starts at least a second after the one before it, whatever the machine's speed:
    // in `elapsed`, at most one per whole second of it, and possibly one more.
    let most = elapsed.as_secs() as f64 + 1.0;
    assert!(
        queries <= most,
        "{queries} queries for 20 scrapes in {elapsed:?}"
    );
    assert_eq!(reads(&last, "failed"), 0.0);
}

#[tokio::test]
async fn with_the_database_down_metrics_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = private_cluster(&dir);
    let app = spawn_app_on(cluster_url(&cluster.0, "postgres"), |_| {}).await;
    let channel = app.create_channel().await;
    let up = metrics_text(&app).await;
    assert_eq!(levels(&up, &channel), Some((0.0, 0.0, 0.0)), "{up}");
    app.pool.close().await;

    let stopper = cluster.0.clone();
    tokio::task::spawn_blocking(move || stopper.stop())
        .await
        .unwrap()
        .unwrap();
    let text = scrape_until(&app, |text| reads(text, "failed") >= 1.0).await;
    assert!(reads(&text, "failed") >= 1.0, "{text}");
    // The rest is served; the queue gauges are described but have no values.
    assert!(text.contains("leavemsg_build_info{"), "{text}");
    assert!(text.contains("leavemsg_db_pool_connections{"), "{text}");
    assert!(
        text.contains("# HELP leavemsg_queue_due_messages "),
        "{text}"
    );
    assert_eq!(levels(&text, &channel), None, "{text}");
    assert!(!text.contains("leavemsg_queue_due_messages{"), "{text}");
}

#[tokio::test]
async fn every_metric_the_recommended_alerts_read_is_exported() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    // Histograms appear at their first observation.
    let msg = serde_json::json!({"phoneNo": "123456", "leaveMessage": "observed"});
    assert_eq!(app.leave_message(&token, &msg).await.status(), 200);
    let text = metrics_text(&app).await;
    let rules =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.yml")).unwrap();
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("leavemsg_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(
        names.contains(&"leavemsg_queue_oldest_due_age_seconds"),
        "{names:?}"
    );
    for name in names {
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "docs/alerts.yml reads {name}, which /metrics does not export:\n{text}"
        );
    }
}
