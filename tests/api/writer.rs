//! The group-commit writer: batching must not change what each caller is told.

use std::net::IpAddr;
use std::time::Duration;

use leavemsg::domain::{CallbackAfter, ChannelId, MessageText, PhoneNo};
use leavemsg::store::Store;
use leavemsg::store::messages::{NewMessage, Outcome, Stored};
use leavemsg::store::writer::{WriteQueue, Writer};
use sha2::{Digest, Sha256};

use crate::helpers::*;

fn message(channel: &str, user: &str, text: &str, forwarded_for: Option<&str>) -> NewMessage {
    NewMessage {
        channel_id: ChannelId::parse(channel).unwrap(),
        user_id: user.to_owned(),
        user_name: "n".to_owned(),
        phone: PhoneNo::parse("123456").unwrap(),
        text: MessageText::parse(text).unwrap(),
        callback_after: None,
        client_ip: "192.0.2.1".parse::<IpAddr>().unwrap(),
        forwarded_for: forwarded_for.map(str::to_owned),
        user_agent: None,
        submission_key: Sha256::digest(format!("{user}/{text}")).into(),
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[tokio::test]
async fn a_batch_answers_each_row_for_itself() {
    each_row_is_answered_for_itself(Duration::ZERO).await;
}

#[tokio::test]
async fn with_a_gathering_window_each_row_is_still_answered_for_itself() {
    each_row_is_answered_for_itself(Duration::from_millis(50)).await;
}

async fn each_row_is_answered_for_itself(window: Duration) {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let good = app.token_for(&channel, "good").await;
    let replaced = app.token_for(&channel, "old").await;
    let _newer = app.token_for(&channel, "old").await;
    let writer = Writer::start(&app.store, window);

    // Submitted together, so they share batches: new rows, a duplicate of one of them, a row
    // whose token was replaced meanwhile, and a row PostgreSQL refuses (NUL in a text column).
    let mut calls = Vec::new();
    for i in 0..20 {
        calls.push((format!("m{i}"), "good", good.clone(), None));
    }
    calls.push(("m3".to_owned(), "good", good.clone(), None));
    calls.push(("stale".to_owned(), "old", replaced.clone(), None));
    calls.push(("bad row".to_owned(), "good", good.clone(), Some("a\0b")));
    let outcomes = futures_util::future::join_all(calls.iter().map(|(text, user, token, fwd)| {
        writer.write(message(&channel, user, text, *fwd), hash(token))
    }))
    .await;

    let mut new_ids = Vec::new();
    for (i, outcome) in outcomes[..20].iter().enumerate() {
        match outcome {
            Ok(Outcome::Stored(Stored::New(id))) => new_ids.push(*id),
            // m3 and its duplicate: exactly one of them is new.
            Ok(Outcome::Stored(Stored::AlreadyStored)) if i == 3 => {}
            other => panic!("m{i}: {other:?}"),
        }
    }
    assert!(
        matches!(outcomes[20], Ok(Outcome::Stored(_))),
        "{:?}",
        outcomes[20]
    );
    let m3_new = usize::from(matches!(outcomes[3], Ok(Outcome::Stored(Stored::New(_)))))
        + usize::from(matches!(outcomes[20], Ok(Outcome::Stored(Stored::New(_)))));
    assert_eq!(m3_new, 1, "the duplicate is stored once");
    assert_eq!(outcomes[21].as_ref().unwrap(), &Outcome::TokenNoLongerValid);
    assert!(
        outcomes[22].is_err(),
        "the refused row is an error: {:?}",
        outcomes[22]
    );

    // Sent again later, alone: already stored, whichever batch stored it.
    let again = writer
        .write(message(&channel, "good", "m0", None), hash(&good))
        .await;
    assert_eq!(again.unwrap(), Outcome::Stored(Stored::AlreadyStored));
    // The same with a replaced token: refused, nothing written.
    let again = writer
        .write(message(&channel, "old", "stale", None), hash(&replaced))
        .await;
    assert_eq!(again.unwrap(), Outcome::TokenNoLongerValid);

    let texts: Vec<String> = sqlx::query_scalar("SELECT message FROM leave_message ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(texts.len(), 20, "{texts:?}");
    assert!(!texts.contains(&"stale".to_owned()) && !texts.contains(&"bad row".to_owned()));
}

#[tokio::test]
async fn writers_sharing_a_queue_write_what_arrives_on_either_in_one_batch() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let token = app.token_for(&channel, "v").await;
    // Two workers' writers, as startup makes them.
    let queue = WriteQueue::default();
    let writers = [
        Writer::joining(&queue, &app.store, Duration::ZERO),
        Writer::joining(&queue, &app.store, Duration::ZERO),
    ];

    // Submitted together through both: one writer leads and writes them all, in one statement
    // (rows of one statement share its transaction id).
    let calls = (0..20).map(|i| {
        writers[i % 2].write(message(&channel, "v", &format!("m{i}"), None), hash(&token))
    });
    for outcome in futures_util::future::join_all(calls).await {
        assert!(
            matches!(outcome, Ok(Outcome::Stored(Stored::New(_)))),
            "{outcome:?}"
        );
    }
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM leave_message")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(transactions, 1);

    // One at a time, alternating: each writer takes the lead in turn and lets it go.
    for i in 20..30 {
        let outcome = writers[i % 2]
            .write(message(&channel, "v", &format!("m{i}"), None), hash(&token))
            .await;
        assert!(
            matches!(outcome, Ok(Outcome::Stored(Stored::New(_)))),
            "m{i}: {outcome:?}"
        );
    }
    assert_eq!(app.message_count().await, 30);
}

#[tokio::test]
async fn a_writer_stopping_while_it_leads_leaves_the_queue_to_another() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let token = app.token_for(&channel, "v").await;
    let queue = WriteQueue::default();
    // One writer on a runtime of its own, as on an HTTP worker that stops first at shutdown.
    let other_worker = tokio::runtime::Runtime::new().unwrap();
    let stopping = {
        let _on = other_worker.enter();
        Writer::joining(&queue, &app.store, Duration::ZERO)
    };
    let staying = Writer::joining(&queue, &app.store, Duration::ZERO);

    // The stopping writer leads, held up by a lock on the table; a submission through the
    // other writer queues behind it.
    let blocker = app.lock_message_table().await;
    let first = tokio::spawn({
        let m = message(&channel, "v", "first", None);
        let token = hash(&token);
        async move { stopping.write(m, token).await }
    });
    let waiting = wait_until(Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks
             WHERE relation = 'leave_message'::regclass AND NOT granted",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
            > 0
    })
    .await;
    assert!(waiting, "the first submission never reached the database");
    let second = tokio::spawn({
        let m = message(&channel, "v", "second", None);
        let token = hash(&token);
        async move { staying.write(m, token).await }
    });
    tokio::task::yield_now().await;

    // Its worker stops mid-batch; the table is free again.
    other_worker.shutdown_background();
    blocker.rollback().await.unwrap();

    // The queued submission is written by the writer that stays, within the deadline.
    assert!(
        matches!(second.await.unwrap(), Ok(Outcome::Stored(Stored::New(_)))),
        "the submission behind a stopped leader was not written"
    );
    // The first caller was told nothing was confirmed (its row may or may not be stored).
    assert!(first.await.unwrap().is_err());
}

#[tokio::test]
async fn rows_of_one_batch_keep_their_own_callback_times() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let token = app.token_for(&channel, "v").await;
    let writer = Writer::start(&app.store, Duration::from_millis(50));
    let now = chrono::Utc::now();
    // Every third row as soon as possible, the others i hours ahead.
    let wanted = |i: i64| (i % 3 != 0).then(|| now + chrono::Duration::hours(i));
    let calls = (0..30).map(|i| {
        let mut m = message(&channel, "v", &format!("m{i}"), None);
        m.callback_after = wanted(i).map(|at| CallbackAfter::parse(&at.to_rfc3339(), now).unwrap());
        writer.write(m, hash(&token))
    });
    for outcome in futures_util::future::join_all(calls).await {
        assert!(
            matches!(outcome, Ok(Outcome::Stored(Stored::New(_)))),
            "{outcome:?}"
        );
    }
    let rows: Vec<(String, Option<chrono::DateTime<chrono::Utc>>, bool)> = sqlx::query_as(
        "SELECT message, callback_after, due_at = greatest(received_at, callback_after)
         FROM leave_message",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 30);
    for (text, after, due_as_asked) in rows {
        let i: i64 = text[1..].parse().unwrap();
        let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
        assert_eq!(after.map(micros), wanted(i).map(micros), "{text}");
        assert!(due_as_asked, "{text}");
    }
}

#[tokio::test]
async fn a_database_failure_fails_every_request_of_the_batch() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let token = app.token_for(&channel, "v").await;
    // A pool whose every connection attempt is refused.
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    let writer = Writer::start(&Store::new(unreachable), Duration::ZERO);
    let calls: Vec<_> = (0..10)
        .map(|i| writer.write(message(&channel, "v", &format!("m{i}"), None), hash(&token)))
        .collect();
    for outcome in futures_util::future::join_all(calls).await {
        assert!(outcome.is_err(), "{outcome:?}");
    }
    assert_eq!(app.message_count().await, 0);
}

#[tokio::test]
async fn while_the_table_is_locked_no_request_is_acknowledged() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let blocker = app.lock_message_table().await;
    let bodies: Vec<serde_json::Value> = (0..12)
        .map(|i| serde_json::json!({"phoneNo": "123456", "leaveMessage": format!("m{i}")}))
        .collect();
    let calls = bodies.iter().map(|body| app.leave_message(&token, body));
    for resp in futures_util::future::join_all(calls).await {
        let (status, body) = reply(resp).await;
        assert_eq!((status, body["resultCode"].as_str()), (503, Some("13")));
    }
    blocker.rollback().await.unwrap();
}
