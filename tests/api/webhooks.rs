//! CONTRACT §7.1: signed webhooks from the transactional outbox, sent to receivers the tests
//! run themselves ([`Receiver`]: a small HTTP/1.1 server on loopback that records what it gets
//! and answers as it is told).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::*;
use leavemsg::credentials::WebhookSecret;
use leavemsg::domain::{DeliveryStatus, EndpointUrl, EventTypes};
use leavemsg::store::webhooks::{NewEndpoint, Subscribed};

const DEADLINE: Duration = Duration::from_secs(60);

/// Subscribes `url` to every event of every channel; returns the endpoint's secret.
async fn subscribe(app: &TestApp, url: &str, events: &[&str]) -> WebhookSecret {
    let secret = WebhookSecret::generate();
    let added = app
        .store
        .create_webhook(&NewEndpoint {
            url: &EndpointUrl::parse(url).unwrap(),
            channel: None,
            events: &EventTypes::parse("events", events).unwrap(),
            secret: &secret,
        })
        .await
        .unwrap();
    assert!(matches!(added, Subscribed::Added(_)));
    secret
}

/// The Standard Webhooks signature, computed here with the hmac crate, independently of the
/// service's code: base64(HMAC-SHA256(base64-decoded secret, "id.timestamp.body")).
fn expected_signature(secret: &str, got: &Received) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            got.header("webhook-id"),
            got.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&got.body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Retries a second apart (then 2, 4, … s); tries may take the default 10 s.
async fn fast_retries() -> TestApp {
    spawn_app_with(|s| s.webhooks.retry_base = Duration::from_secs(1)).await
}

#[tokio::test]
async fn every_change_reaches_the_endpoint_signed_and_in_order() {
    let app = fast_retries().await;
    let receiver = Receiver::answering(&[]).await;
    let secret = subscribe(&app, &receiver.url, &[]).await;
    let key = app.create_agent("alice", false).await;
    let (channel, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "+1 555 0107", "Call me").await;
    let resp = app
        .agent_post(&key, &format!("/api/v1/messages/{id}/claim"), None)
        .await;
    assert_eq!(resp.status(), 200);
    let resp = app
        .agent_post(
            &key,
            &format!("/api/v1/messages/{id}/attempts"),
            Some(json!({"result": "no_answer", "note": "Rang 10 times"})),
        )
        .await;
    assert_eq!(resp.status(), 200);

    let got = receiver.wait_for(3).await;
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        ["message.stored", "message.claimed", "message.attempted"]
    );
    let now = chrono::Utc::now().timestamp();
    for r in &got {
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("webhook-id").starts_with("evt_"), "{r:?}");
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!(
            (now - 120..=now + 5).contains(&ts),
            "timestamp {ts}, now {now}"
        );
        assert_eq!(
            r.header("webhook-signature"),
            expected_signature(secret.expose(), r)
        );
        let body = r.json();
        assert_eq!(body["data"]["id"], json!(id));
        assert_eq!(body["data"]["channelId"], json!(channel));
        assert_eq!(body["data"]["phoneNo"], json!("+1 555 0107"));
        assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
    }
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 3, "each event has its own webhook-id");
    let stored = got[0].json();
    assert_eq!(stored["data"]["status"], json!("pending"));
    assert_eq!(stored["data"]["leaveMessage"], json!("Call me"));
    let claimed = got[1].json();
    assert_eq!(claimed["data"]["status"], json!("assigned"));
    assert_eq!(claimed["data"]["assignedTo"], json!("alice"));
    let attempted = got[2].json();
    assert_eq!(attempted["data"]["status"], json!("pending"));
    assert_eq!(attempted["data"]["attempts"], json!(1));
    assert_eq!(
        attempted["data"]["attempt"],
        json!({"result": "no_answer", "note": "Rang 10 times", "agent": "alice"})
    );
    // The message as the API shows it, plus the attempt: the same JSON.
    let now_json: Value = app
        .agent_get(&key, &format!("/api/v1/messages/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let mut sent = attempted["data"].clone();
    sent.as_object_mut().unwrap().remove("attempt");
    let (mut sent, mut shown) = (sent, now_json);
    // overdue is computed as of each read.
    sent.as_object_mut().unwrap().remove("overdue");
    shown.as_object_mut().unwrap().remove("overdue");
    assert_eq!(sent, shown);

    // Each went through at its first try, the message.stored without a delivery row.
    assert!(
        wait_until(DEADLINE, || async {
            let delivered = deliveries_with(&app.store, DeliveryStatus::Delivered).await;
            delivered.len() == 3 && delivered.iter().all(|d| d.tries == 1)
        })
        .await
    );
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT e.type FROM webhook_delivery d JOIN outbox_event e ON e.id = d.event_id
         ORDER BY e.id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows, ["message.claimed", "message.attempted"]);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_event_again_until_it_answers() {
    let app = fast_retries().await;
    let receiver = Receiver::answering(&[500, 503]).await;
    subscribe(&app, &receiver.url, &["message.stored"]).await;
    let (_, token) = app.channel_and_token().await;
    app.store_message(&token, "123456", "again and again").await;

    let got = receiver.wait_for(3).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, [ids[0]; 3], "the same webhook-id on every try");
    // The id the database gives a message.stored event (its e-mail's, too).
    let uid: uuid::Uuid =
        sqlx::query_scalar("SELECT outbox_stored_uid(max(id)) FROM leave_message")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(ids[0], format!("evt_{}", uid.simple()));
    assert!(
        wait_until(DEADLINE, || async {
            sqlx::query_as::<_, (String, i32, Option<String>)>(
                "SELECT status, tries, last_error FROM webhook_delivery",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap()
                == ("delivered".to_owned(), 3, None)
        })
        .await
    );
    // Nothing more is sent once it was delivered.
    assert_eq!(receiver.got().len(), 3);
}

#[tokio::test]
async fn a_hanging_receiver_holds_up_neither_intake_nor_other_endpoints() {
    let app = spawn_app_with(|s| {
        s.webhooks.retry_base = Duration::from_secs(1);
        s.webhooks.timeout = Duration::from_secs(2);
    })
    .await;
    let hanging = Receiver::start(Answer::Hang).await;
    let healthy = Receiver::answering(&[]).await;
    subscribe(&app, &hanging.url, &[]).await;
    subscribe(&app, &healthy.url, &[]).await;
    let (_, token) = app.channel_and_token().await;
    for i in 0..10 {
        app.store_message(&token, "123456", &format!("message {i}"))
            .await;
    }
    let got = healthy.wait_for(10).await;
    assert_eq!(got.len(), 10);
    hanging.wait_for(1).await;
    // The hanging endpoint's tries time out and wait for their retry; none was delivered.
    assert!(
        wait_until(DEADLINE, || async {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT min(d.last_error) FROM webhook_delivery d
                 JOIN webhook_endpoint w ON w.id = d.endpoint_id WHERE w.url = $1",
            )
            .bind(&hanging.url)
            .fetch_one(&app.pool)
            .await
            .unwrap()
            .as_deref()
                == Some("timed out")
        })
        .await
    );
}

#[tokio::test]
async fn two_instances_send_each_event_once() {
    let app = fast_retries().await;
    let other = spawn_app_on(app.database_url.clone(), |s| {
        s.webhooks.retry_base = Duration::from_secs(1);
    })
    .await;
    let receiver = Receiver::answering(&[]).await;
    subscribe(&app, &receiver.url, &["message.stored"]).await;
    let (_, token) = app.channel_and_token().await;
    for i in 0..30 {
        let target = if i % 2 == 0 { &app } else { &other };
        target
            .store_message(&token, "123456", &format!("message {i}"))
            .await;
    }
    assert!(
        wait_until(DEADLINE, || async {
            deliveries_with(&app.store, DeliveryStatus::Delivered)
                .await
                .len()
                == 30
        })
        .await
    );
    let got = receiver.got();
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!((got.len(), ids.len()), (30, 30), "each event once");
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_written_to_the_outbox() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    app.store_message(&token, "123456", "no one listens").await;
    let written: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM outbox_event) + (SELECT count(*) FROM outbox_stored)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(written, 0);
}

#[tokio::test]
async fn the_cli_adds_lists_and_removes_endpoints_and_shows_a_secret_once() {
    let app = spawn_app().await;
    let url = &app.database_url;
    let channel = app.create_channel().await;
    let out = ok(
        url,
        &[
            "webhook",
            "add",
            "--url",
            "https://crm.example.com/hooks/leavemsg",
            "--channel",
            &channel,
            "--event",
            "message.stored",
            "--event",
            "message.processed",
        ],
    );
    let secret = out.lines().last().unwrap().to_owned();
    assert!(WebhookSecret::parse(&secret).is_some(), "{out}");
    let id = out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("added webhook endpoint ")
        .unwrap()
        .to_owned();

    let list = ok(url, &["webhook", "list"]);
    assert!(list.contains(&id), "{list}");
    assert!(
        list.contains("https://crm.example.com/hooks/leavemsg"),
        "{list}"
    );
    assert!(list.contains("message.stored,message.processed"), "{list}");
    assert!(list.contains(&channel), "{list}");
    assert!(!list.contains("whsec_"), "no secret in the list: {list}");

    for (args, says) in [
        (
            vec!["--url", "ftp://example.com/x"],
            "--url must be an http",
        ),
        (vec!["--url", "not a url"], "--url is not an absolute"),
        (
            vec!["--url", "https://example.com", "--event", "message.sent"],
            "--event must name event types (message.stored, ",
        ),
        (
            vec![
                "--url",
                "https://example.com",
                "--channel",
                "8c0f4d7e-1111-4222-8333-944455556666",
            ],
            "--channel: no channel has that Configuration ID",
        ),
        (
            vec!["--url", "https://example.com", "--channel", "x"],
            "--channel:",
        ),
    ] {
        let mut all = vec!["webhook", "add"];
        all.extend(args);
        let out = run_leavemsg(url, &all);
        assert!(!out.status.success(), "{all:?}");
        assert!(
            stderr_of(&out).contains(says),
            "{all:?}: {}",
            stderr_of(&out)
        );
    }

    ok(url, &["webhook", "remove", &id]);
    assert!(!ok(url, &["webhook", "list"]).contains(&id));
    let out = run_leavemsg(url, &["webhook", "remove", &id]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("no webhook endpoint has the id"));
}

#[tokio::test]
async fn erasing_a_message_leaves_only_its_ids_in_what_is_still_to_send() {
    // Retries an hour apart: the first failed try waits until the test moves its time.
    let app = spawn_app_with(|s| s.webhooks.retry_base = Duration::from_secs(3600)).await;
    let receiver = Receiver::answering(&[500]).await;
    subscribe(&app, &receiver.url, &[]).await;
    let (channel, token) = app.channel_and_token().await;
    let id = app
        .store_message(&token, "+44 20 7946 0958", "my secret")
        .await;
    let first = receiver.wait_for(1).await;
    assert_eq!(first[0].json()["data"]["leaveMessage"], json!("my secret"));

    let out = ok(&app.database_url, &["erase", "--phone", "442079460958"]);
    assert!(out.contains('1'), "{out}");
    // The failed try becomes an event to retry (before or after the erasure: either way
    // without the data).
    let left = || async {
        sqlx::query_as::<_, (String, Option<Value>)>(
            "SELECT type, data FROM outbox_event WHERE message_id = $1
             ORDER BY type <> 'message.stored', id",
        )
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    assert!(wait_until(DEADLINE, || async { left().await.len() == 2 }).await);
    assert_eq!(
        left().await,
        [
            ("message.stored".to_owned(), None),
            ("message.erased".to_owned(), None)
        ]
    );
    // Both wait (the erasure behind the retry of the message's earlier event): /metrics says so.
    assert!(
        wait_until(DEADLINE, || async {
            let text = app
                .client
                .get(app.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .any(|l| l == "leavemsg_outbox_pending_deliveries 2")
                && text.lines().any(|l| {
                    l.strip_prefix("leavemsg_outbox_oldest_pending_age_seconds ")
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v > 0.0)
                })
        })
        .await
    );
    sqlx::query("UPDATE webhook_delivery SET next_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let got = receiver.wait_for(3).await;
    let ids_only = json!({"id": id, "channelId": channel});
    assert_eq!(got[1].header("webhook-id"), got[0].header("webhook-id"));
    assert_eq!(got[1].json()["type"], json!("message.stored"));
    assert_eq!(
        got[1].json()["data"],
        ids_only,
        "the retry has no personal data"
    );
    assert_eq!(got[2].json()["type"], json!("message.erased"));
    assert_eq!(got[2].json()["data"], ids_only);
    for r in &got[1..] {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("secret") && !body.contains("7946"), "{body}");
    }
}

#[tokio::test]
async fn a_delivery_that_gives_up_is_listed_and_can_be_sent_again() {
    let app = fast_retries().await;
    let statuses = Arc::new(Mutex::new(vec![500; 1000]));
    let receiver = Receiver::start(Answer::Statuses(statuses.clone())).await;
    subscribe(&app, &receiver.url, &["message.stored"]).await;
    let (_, token) = app.channel_and_token().await;
    app.store_message(&token, "123456", "nobody home").await;
    let first = receiver.wait_for(1).await;
    let webhook_id = first[0].header("webhook-id").to_owned();
    // The failed first try becomes a delivery row, retried.
    assert!(wait_until(DEADLINE, || async { delivery_rows(&app).await == 1 }).await);
    // A day and more since it was queued: its next failure is its last.
    sqlx::query("UPDATE webhook_delivery SET since = now() - interval '2 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(
        wait_until(DEADLINE, || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM webhook_delivery")
                .fetch_one(&app.pool)
                .await
                .unwrap()
                == "failed"
        })
        .await
    );
    let tries = receiver.got().len();
    let failed = ok(&app.database_url, &["webhook", "failed"]);
    assert!(failed.contains(&webhook_id), "{failed}");
    assert!(failed.contains("answered 500"), "{failed}");
    assert!(failed.contains("message.stored"), "{failed}");

    statuses.lock().unwrap().clear();
    let out = ok(&app.database_url, &["webhook", "redeliver", &webhook_id]);
    assert!(out.contains("queued 1"), "{out}");
    let got = receiver.wait_for(tries + 1).await;
    assert_eq!(got[tries].header("webhook-id"), webhook_id);
    assert!(
        wait_until(DEADLINE, || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM webhook_delivery")
                .fetch_one(&app.pool)
                .await
                .unwrap()
                == "delivered"
        })
        .await
    );
    assert!(!ok(&app.database_url, &["webhook", "failed"]).contains(&webhook_id));
    let again = run_leavemsg(&app.database_url, &["webhook", "redeliver", "evt_nope"]);
    assert!(!again.status.success());
    assert!(stderr_of(&again).contains("is not an event's webhook-id"));
}

#[tokio::test]
async fn old_events_that_went_through_are_pruned_and_the_others_kept() {
    let app = spawn_app().await;
    let (channel, _) = app.channel_and_token().await;
    subscribe(&app, "http://127.0.0.1:9/never", &[]).await;
    let ids = app.insert_messages(&channel, 3).await;
    // Nothing listens there: each first try fails and becomes an event row to retry.
    assert!(wait_until(DEADLINE, || async { delivery_rows(&app).await == 3 }).await);
    // Time moved in the database: all three events are 30 days old; one delivered, one
    // failed, one still pending. The statement's outbox_stored row is as old.
    sqlx::query("UPDATE outbox_event SET at = now() - interval '30 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    for (id, status) in ids.iter().zip(["delivered", "failed", "pending"]) {
        sqlx::query("UPDATE webhook_delivery SET status = $2, next_at = now() + interval '1 day' WHERE message_id = $1")
            .bind(id)
            .bind(status)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    // A second endpoint whose place a dispatcher holds (leased for a day): the stored
    // messages past it are kept, however old.
    subscribe(&app, "http://127.0.0.1:9/held", &[]).await;
    sqlx::query(
        "UPDATE webhook_cursor
         SET lease = gen_random_uuid(), lease_until = now() + interval '1 day'
         WHERE endpoint_id = (SELECT id FROM webhook_endpoint WHERE url = 'http://127.0.0.1:9/held')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let later = app.insert_messages(&channel, 2).await;
    sqlx::query("UPDATE outbox_stored SET at = now() - interval '30 days'")
        .execute(&app.pool)
        .await
        .unwrap();

    let pruned = app
        .store
        .prune_outbox(Duration::from_secs(7 * 86_400))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let left: Vec<i64> = sqlx::query_scalar(
        "SELECT message_id FROM outbox_event WHERE message_id = ANY($1) ORDER BY message_id",
    )
    .bind(&ids)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(left, ids[1..]);
    let stored: Vec<Vec<i64>> = sqlx::query_scalar("SELECT message_ids FROM outbox_stored")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        [later],
        "only what the held endpoint has not passed"
    );
    // Younger than the limit: kept even when delivered.
    sqlx::query("UPDATE outbox_event SET at = now() - interval '1 day'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE webhook_delivery SET status = 'delivered'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.store
            .prune_outbox(Duration::from_secs(7 * 86_400))
            .await
            .unwrap(),
        0
    );
}

/// A port nothing listens on yet (bound and let go), for a receiver that comes later.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stores a message through the real server's visitor interface.
async fn leave_message_at(server: &ServerProcess, channel: &str, text: &str) {
    let client = reqwest::Client::new();
    let base = server.url("/service-cloud/rest/webadapter/v1/webadapterfacade");
    let token: Value = client
        .post(format!("{base}/applyToken"))
        .json(&json!({"userId": "v1", "userName": "Visitor", "channelId": channel}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();
    let answer: Value = client
        .post(format!("{base}/doLeaveMessage"))
        .header("ccmessaging-token", token)
        .json(&json!({"phoneNo": "123456", "leaveMessage": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["resultCode"], "0", "{answer}");
}

/// Receiver down while messages arrive; leavemsg killed (SIGKILL) and started again; receiver
/// back: every event arrives.
#[tokio::test]
async fn every_event_arrives_after_a_receiver_outage_and_a_killed_instance() {
    let url = fresh_migrated_database().await;
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hook");
    ok(&url, &["webhook", "add", "--url", &hook]);
    let channel = ok(&url, &["channel", "create", "--name", "Web"])
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let envs = [
        ("DATABASE_URL", url.as_str()),
        ("LEAVEMSG_WEBHOOK_RETRY_BASE_SECS", "1"),
        ("LEAVEMSG_RATE_PER_TOKEN", "0"),
        ("LEAVEMSG_RATE_PER_IP", "0"),
    ];
    let mut first = ServerProcess::start(&envs);
    for i in 0..20 {
        leave_message_at(&first, &channel, &format!("message {i}")).await;
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // Each was tried, and refused: nobody listens yet.
    assert!(
        wait_until(DEADLINE, || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM webhook_delivery
                 WHERE status = 'pending' AND tries > 0 AND last_error IS NOT NULL",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                == 20
        })
        .await
    );
    first.signal("KILL");
    assert!(first.wait(DEADLINE).is_some());

    let receiver = Receiver::start_on(
        TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
        Answer::Statuses(Arc::default()),
    );
    let _second = ServerProcess::start(&envs);
    // The retries' time comes (moved in the database; a try the killed instance had under
    // way comes back once its lease ends, moved too).
    sqlx::query("UPDATE webhook_delivery SET next_at = now() WHERE status = 'pending'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        wait_until(DEADLINE, || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM webhook_delivery WHERE status = 'delivered'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                == 20
        })
        .await
    );
    let expected: std::collections::HashSet<String> =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT uid FROM outbox_event")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|u| format!("evt_{}", u.simple()))
            .collect();
    let got: std::collections::HashSet<String> = receiver
        .got()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(expected.len(), 20);
    assert_eq!(got, expected, "every event, each under its own webhook-id");
    pool.close().await;
}

/// PostgreSQL stops while deliveries are under way and comes back: the dispatcher carries on
/// by itself, and every event is delivered.
#[tokio::test]
async fn a_database_restart_mid_dispatch_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = crate::database_faults::private_cluster(&dir);
    let app = spawn_app_on(cluster_url(&cluster.0, "postgres"), |s| {
        s.webhooks.retry_base = Duration::from_secs(1);
    })
    .await;
    // A receiver that takes its time, so that tries are under way when PostgreSQL stops.
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_url = format!("http://{}/hook", slow.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = slow.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut id = String::new();
                    let mut length = 0;
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if stream.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end().to_owned();
                        if h.is_empty() {
                            break;
                        }
                        let (n, v) = h.split_once(':').unwrap();
                        if n.eq_ignore_ascii_case("webhook-id") {
                            id = v.trim().to_owned();
                        } else if n.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    record.lock().unwrap().push(id);
                    if stream
                        .get_mut()
                        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    subscribe(&app, &slow_url, &["message.stored"]).await;
    let (_, token) = app.channel_and_token().await;
    for i in 0..40 {
        app.store_message(&token, "123456", &format!("message {i}"))
            .await;
    }
    assert!(wait_until(DEADLINE, || async { !got.lock().unwrap().is_empty() }).await);
    // 40 tries at 4 at a time and 0.3 s each take seconds: most are still to go.
    let delivered = deliveries_with(&app.store, DeliveryStatus::Delivered)
        .await
        .len();
    assert!(
        delivered < 40,
        "the stop came after every delivery: {delivered}"
    );
    app.pool.close().await;
    let stopper = cluster.0.clone();
    tokio::task::spawn_blocking(move || stopper.stop())
        .await
        .unwrap()
        .unwrap();
    let starter = dir.path().to_owned();
    let _restarted =
        tokio::task::spawn_blocking(move || leavemsg::store::embedded_cluster(&starter).start())
            .await
            .unwrap()
            .unwrap();
    let pool = sqlx::PgPool::connect(&cluster_url(&cluster.0, "postgres"))
        .await
        .unwrap();
    // Tries whose result could not be recorded come back when their lease ends: moved here.
    sqlx::query("UPDATE webhook_delivery SET next_at = now() WHERE status = 'pending'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE webhook_cursor SET lease_until = now()")
        .execute(&pool)
        .await
        .unwrap();
    let store = leavemsg::store::Store::new(pool.clone());
    assert!(
        wait_until(Duration::from_secs(120), || async {
            deliveries_with(&store, DeliveryStatus::Delivered)
                .await
                .len()
                == 40
        })
        .await,
        "every delivery went through after the restart"
    );
    let ids: std::collections::HashSet<String> = got.lock().unwrap().iter().cloned().collect();
    assert_eq!(ids.len(), 40, "every event reached the receiver");
    pool.close().await;
}

/// A message's later events wait while an earlier one is being retried.
#[tokio::test]
async fn a_messages_events_wait_for_the_earlier_one_to_go_through() {
    let app = fast_retries().await;
    let receiver = Receiver::answering(&[500]).await;
    subscribe(&app, &receiver.url, &[]).await;
    let key = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "in order").await;
    receiver.wait_for(1).await;
    for (call, body) in [
        ("claim", None),
        ("process", Some(json!({"outcome": "called_back"}))),
    ] {
        let resp = app
            .agent_post(&key, &format!("/api/v1/messages/{id}/{call}"), body)
            .await;
        assert_eq!(resp.status(), 200);
    }
    let got = receiver.wait_for(4).await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.json()["type"].as_str().unwrap().to_owned(),
                r.header("webhook-id").to_owned(),
            )
        })
        .collect();
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "message.stored",
            "message.stored",
            "message.claimed",
            "message.processed"
        ]
    );
    assert_eq!(seen[0].1, seen[1].1, "the retry is the same event");
}

/// An intake statement writes one outbox row, however many messages it stores; every endpoint
/// gets each message.stored under the same webhook-id, with no delivery row.
#[tokio::test]
async fn a_batch_of_stored_messages_writes_one_outbox_row_and_reaches_every_endpoint() {
    let app = spawn_app().await;
    let one = Receiver::answering(&[]).await;
    let two = Receiver::answering(&[]).await;
    subscribe(&app, &one.url, &["message.stored"]).await;
    subscribe(&app, &two.url, &[]).await;
    let (channel, _) = app.channel_and_token().await;
    let ids = app.insert_messages(&channel, 5).await;
    let rows: Vec<Vec<i64>> = sqlx::query_scalar("SELECT message_ids FROM outbox_stored")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, std::slice::from_ref(&ids));
    let webhook_ids = |got: Vec<Received>| -> Vec<(i64, String)> {
        let mut seen: Vec<(i64, String)> = got
            .iter()
            .map(|r| {
                assert_eq!(r.json()["type"], json!("message.stored"));
                (
                    r.json()["data"]["id"].as_i64().unwrap(),
                    r.header("webhook-id").to_owned(),
                )
            })
            .collect();
        seen.sort();
        seen
    };
    let first = webhook_ids(one.wait_for(5).await);
    let second = webhook_ids(two.wait_for(5).await);
    assert_eq!(first, second, "the same event id at every endpoint");
    assert_eq!(first.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    assert!(
        wait_until(DEADLINE, || async {
            deliveries_with(&app.store, DeliveryStatus::Delivered)
                .await
                .len()
                == 10
        })
        .await
    );
    assert_eq!(delivery_rows(&app).await, 0);
}

/// A message whose transaction began before another's and commits after it is still sent: an
/// endpoint's place never passes a transaction that is still running.
#[tokio::test]
async fn a_message_committed_after_a_later_one_was_sent_is_sent_too() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(&[]).await;
    subscribe(&app, &receiver.url, &["message.stored"]).await;
    let (channel, _) = app.channel_and_token().await;
    let mut slow = app.pool.begin().await.unwrap();
    let early = insert_messages(&mut *slow, &channel, 1).await;
    let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *slow)
        .await
        .unwrap();
    let late = app.insert_messages(&channel, 1).await;
    // The dispatcher has looked since, and stopped at the running transaction.
    assert!(
        wait_until(DEADLINE, || async {
            sqlx::query_scalar::<_, i64>("SELECT stored_upto FROM webhook_cursor")
                .fetch_one(&app.pool)
                .await
                .unwrap()
                == xid
        })
        .await
    );
    slow.commit().await.unwrap();
    let mut got: Vec<i64> = receiver
        .wait_for(2)
        .await
        .iter()
        .map(|r| r.json()["data"]["id"].as_i64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, [early[0], late[0]]);
}
