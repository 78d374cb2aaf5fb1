//! CONTRACT §2.2: a database that is down answers 503 with code "13", and the service
//! recovers by itself when it returns. Uses a cluster of its own so it can stop it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use embedded_pg::Cluster;
use serde_json::{Value, json};

use crate::helpers::*;

pub struct StopOnDrop(pub Cluster);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

/// A cluster of the test's own in `dir`, which it may stop; stopped when dropped.
pub fn private_cluster(dir: &tempfile::TempDir) -> StopOnDrop {
    use std::os::unix::fs::PermissionsExt;
    // The cluster's OS user (when tests run as root) must be able to reach the folder.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = leavemsg::store::embedded_cluster(dir.path()).start();
    StopOnDrop(cluster.unwrap_or_else(|e| panic!("{e}")))
}

#[tokio::test]
async fn with_postgres_stopped_mid_load_requests_get_503_and_the_service_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = private_cluster(&dir);
    let app = spawn_app_on(cluster_url(&cluster.0, "postgres"), |_| {}).await;
    let key = app.create_agent("alice", false).await;
    let mut stream = EventReader::open(&app, &key).await;
    let (channel, token) = app.channel_and_token().await;
    let msg = |text: &str| json!({"phoneNo": "123456", "leaveMessage": text});
    assert_eq!(
        reply(app.leave_message(&token, &msg("before")).await)
            .await
            .0,
        200
    );
    assert!(stream.wait_for("\"before\"", Duration::from_secs(30)).await);
    app.pool.close().await;

    // Load from several visitors while PostgreSQL goes away.
    let stop_load = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let mut workers = Vec::new();
    for w in 0..6 {
        let token = app.token_for(&channel, &format!("load-{w}")).await;
        let (client, url) = (app.client.clone(), app.facade("doLeaveMessage"));
        let (stop_load, acked, slowest) = (stop_load.clone(), acked.clone(), slowest.clone());
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0.. {
                if stop_load.load(Ordering::Relaxed) {
                    break;
                }
                let text = format!("load-{w}-{i}");
                let started = Instant::now();
                let resp = client
                    .post(&url)
                    .header("cookie", format!("ccmessaging-token={token}"))
                    .json(&json!({"phoneNo": "123456", "leaveMessage": text}))
                    .send()
                    .await
                    .expect("every request is answered");
                let took = started.elapsed();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap();
                {
                    let mut slowest = slowest.lock().unwrap();
                    *slowest = (*slowest).max(took);
                }
                match status {
                    200 => acked.lock().unwrap().push(text),
                    503 => assert_eq!(body["resultCode"], "13"),
                    other => panic!("under a database outage the answer was {other}: {body}"),
                }
                answers.push(status);
            }
            answers
        }));
    }
    let loaded = wait_until(Duration::from_secs(60), || async {
        acked.lock().unwrap().len() >= 20
    })
    .await;
    assert!(loaded, "the load did not get going");

    let stopper = cluster.0.clone();
    tokio::task::spawn_blocking(move || stopper.stop())
        .await
        .unwrap()
        .unwrap();

    let started = Instant::now();
    let (status, body) = reply(app.leave_message(&token, &msg("while down")).await).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({"returnCode": "13", "resultCode": "13",
               "description": "Save leaveMessage failed!", "resultDesc": "Save leaveMessage failed!"})
    );
    // Bounded by the service's own deadline; generous here so a busy machine cannot break it.
    assert!(started.elapsed() < Duration::from_secs(20));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let resp = app
        .apply_token_raw(
            &json!({"userId": "u9", "userName": "n", "channelId": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json::<Value>().await.unwrap()["resultCode"], "13");
    let starter_dir = dir.path().to_owned();
    let restarted = tokio::task::spawn_blocking(move || {
        leavemsg::store::embedded_cluster(&starter_dir).start()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(restarted.started_here());
    // The contract allows 10 s; the wait is longer so only a real failure to recover fails.
    let recovered = wait_until(Duration::from_secs(60), || async {
        app.leave_message(&token, &msg("after")).await.status() == 200
    })
    .await;
    assert!(
        recovered,
        "the service did not recover after PostgreSQL returned"
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The live stream reconnected by itself and announces what was stored after the restart.
    assert!(
        stream.wait_for("\"after\"", Duration::from_secs(60)).await,
        "stream after the restart: {}",
        stream.text
    );
    stop_load.store(true, Ordering::Relaxed);
    let mut statuses = HashSet::new();
    for w in workers {
        statuses.extend(w.await.unwrap());
    }
    assert!(
        statuses.contains(&503),
        "the load never met the outage: {statuses:?}"
    );
    // Every answer came within the service's deadline plus generous slack.
    assert!(*slowest.lock().unwrap() < Duration::from_secs(20));

    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let stored: HashSet<String> = sqlx::query_scalar("SELECT message FROM leave_message")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for text in acked
        .lock()
        .unwrap()
        .iter()
        .chain(["before".to_owned(), "after".to_owned()].iter())
    {
        assert!(stored.contains(text), "acknowledged {text:?} is not stored");
    }
    assert!(!stored.contains("while down"));
    drop(stream);
    leavemsg::startup::Application::shutdown(&app.handle, &app.live).await;
}

/// CONTRACT §5: a lost database connection costs no request once the database is back. After
/// a restart every pooled connection (and the writer's) is dead; the first requests after it
/// find that out and go on, on fresh connections.
#[tokio::test]
async fn after_a_database_restart_no_request_fails_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = private_cluster(&dir);
    let app = spawn_app_on(cluster_url(&cluster.0, "postgres"), |_| {}).await;
    let (channel, token) = app.channel_and_token().await;
    let msg = |text: &str| json!({"phoneNo": "123456", "leaveMessage": text});
    assert_eq!(
        reply(app.leave_message(&token, &msg("before")).await)
            .await
            .0,
        200
    );
    app.pool.close().await;
    // Many requests at once, so the pool holds many connections, all of which the restart
    // will break.
    let users: Vec<String> = (0..24).map(|i| format!("warm-{i}")).collect();
    let calls = users.iter().map(|user| app.token_for(&channel, user));
    futures_util::future::join_all(calls).await;

    let stopper = cluster.0.clone();
    tokio::task::spawn_blocking(move || stopper.stop())
        .await
        .unwrap()
        .unwrap();
    let starter_dir = dir.path().to_owned();
    let _restarted = tokio::task::spawn_blocking(move || {
        leavemsg::store::embedded_cluster(&starter_dir).start()
    })
    .await
    .unwrap()
    .unwrap();

    // The database is back: from the first request on, nothing fails.
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "readiness after the restart");
    for i in 0..24 {
        let resp = app
            .apply_token_raw(&json!({"userId": format!("after-{i}"), "userName": "n",
                                     "channelId": channel}))
            .await;
        let (status, body) = reply(resp).await;
        assert_eq!(
            (status, body["resultCode"].as_str()),
            (200, Some("0")),
            "applyToken {i}"
        );
    }
    let (status, body) = reply(app.leave_message(&token, &msg("after")).await).await;
    assert_eq!((status, body["resultCode"].as_str()), (200, Some("0")));
}

/// CONTRACT §2.1a: the 503 of a database that is down is readable by a page on an allowed
/// origin too, so the widget can say "try again later".
#[tokio::test]
async fn a_503_to_an_allowed_origin_carries_the_cors_headers() {
    const SHOP: &str = "https://shop.example";
    let dir = tempfile::tempdir().unwrap();
    let cluster = private_cluster(&dir);
    let app = spawn_app_on(cluster_url(&cluster.0, "postgres"), |_| {}).await;
    let channel = app.create_channel_with(&[SHOP], false).await;
    let token = app.token_for(&channel, "visitor").await;
    app.pool.close().await;
    let stopper = cluster.0.clone();
    tokio::task::spawn_blocking(move || stopper.stop())
        .await
        .unwrap()
        .unwrap();

    for cookie in [format!("ccmessaging-token={token}"), String::new()] {
        let resp = app
            .client
            .post(app.facade("doLeaveMessage"))
            .header("origin", SHOP)
            .header("cookie", cookie.as_str())
            .json(&json!({"phoneNo": "123456", "leaveMessage": "while down"}))
            .send()
            .await
            .unwrap();
        let expected = if cookie.is_empty() { 401 } else { 503 };
        assert_eq!(resp.status(), expected);
        assert_eq!(resp.headers()["access-control-allow-origin"], SHOP);
    }
    let resp = app
        .client
        .post(app.facade("applyToken"))
        .header("origin", SHOP)
        .json(&json!({"userId": "v2", "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["access-control-allow-origin"], SHOP);
}
