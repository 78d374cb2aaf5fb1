//! CONTRACT §3: the live stream of newly stored messages.

use std::time::Duration;

use crate::helpers::*;

/// Generous: the contract's promise is one second, but a busy machine must not fail the test.
const ARRIVAL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_message_stored_through_one_instance_reaches_the_others_stream() {
    let a = spawn_app().await;
    let b = spawn_app_on(a.database_url.clone(), |_| {}).await;
    let key = a.create_agent("alice", false).await;
    let mut on_a = EventReader::open(&a, &key).await;
    let mut on_b = EventReader::open(&b, &key).await;
    assert!(on_a.wait_for(": connected", ARRIVAL).await);
    assert!(on_b.wait_for(": connected", ARRIVAL).await);
    assert!(on_a.text.starts_with("retry: "));

    let (_, token) = b.channel_and_token().await;
    let id = b
        .store_message(&token, "+44 20 7946 0958", "<b>hi</b> from B")
        .await;
    assert!(
        on_a.wait_for("event: message", ARRIVAL).await,
        "A's stream: {}",
        on_a.text
    );
    assert!(
        on_b.wait_for("event: message", ARRIVAL).await,
        "B's stream: {}",
        on_b.text
    );
    for reader in [&on_a, &on_b] {
        let events = reader.messages();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["id"].as_i64(), Some(id));
        assert_eq!(events[0]["leaveMessage"], "<b>hi</b> from B");
        assert_eq!(events[0]["status"], "pending");
    }
    // A refused message is not announced.
    let resp = b
        .leave_message(
            &token,
            &serde_json::json!({"phoneNo": "x", "leaveMessage": "bad"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id2 = b.store_message(&token, "123456", "second").await;
    assert!(on_a.wait_for(&format!("id: {id2}"), ARRIVAL).await);
    assert_eq!(on_a.messages().len(), 2);
}

#[tokio::test]
async fn heartbeats_flow_and_clients_that_leave_are_let_go() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    assert!(!app.live.is_listening(), "listening with nobody watching");
    let mut reader = EventReader::open(&app, &key).await;
    let second = EventReader::open(&app, &key).await;
    assert!(wait_until(ARRIVAL, || async { app.live.clients() == 2 }).await);
    assert!(
        reader
            .wait_for(": heartbeat", Duration::from_secs(60))
            .await
    );

    drop(second);
    drop(reader);
    let released = wait_until(Duration::from_secs(60), || async {
        app.live.clients() == 0
    })
    .await;
    assert!(
        released,
        "stream clients still counted after they left: {}",
        app.live.clients()
    );
    // With nobody watching, the instance stops listening (at the next announcement).
    let (_, token) = app.channel_and_token().await;
    app.store_message(&token, "123456", "unwatched").await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            !app.live.is_listening()
        })
        .await,
        "still listening with nobody watching"
    );
}

#[tokio::test]
async fn every_message_one_statement_stores_reaches_the_stream() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let mut reader = EventReader::open(&app, &key).await;
    assert!(reader.wait_for(": connected", ARRIVAL).await);
    let channel = app.create_channel().await;

    // One statement, as a DBA's bulk INSERT would be, with ids as long as they get: more than
    // one notification's payload (under 8000 bytes) can carry.
    sqlx::query("ALTER TABLE leave_message ALTER COLUMN id RESTART WITH 1000000000000000000")
        .execute(&app.pool)
        .await
        .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO leave_message (channel_id, user_id, user_name, phone_no, phone_digits,
                                    message, client_ip, submission_key)
         SELECT $1::uuid, 'v', 'n', '123456', '123456', 'bulk ' || g, '192.0.2.1',
                sha256(g::text::bytea)
         FROM generate_series(1, 650) g
         RETURNING id",
    )
    .bind(&channel)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(
        reader.wait_for_messages(ids.len(), ARRIVAL).await,
        "{} events so far",
        reader.messages().len()
    );
    let mut seen: Vec<i64> = reader
        .messages()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let mut expected = ids.clone();
    seen.sort_unstable();
    expected.sort_unstable();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn one_key_gets_at_most_eight_streams_and_others_are_unaffected() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let bob = app.create_agent("bob", false).await;
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(EventReader::open(&app, &alice).await);
    }
    let ninth = app.agent_get(&alice, "/api/v1/messages/stream").await;
    assert_eq!(ninth.status(), 429);
    assert!(ninth.headers().contains_key("retry-after"));
    let err: serde_json::Value = ninth.json().await.unwrap();
    assert_eq!(err["error"], "too_many_requests");
    // Another agent still gets a stream.
    let mut other = EventReader::open(&app, &bob).await;
    assert!(other.wait_for(": connected", ARRIVAL).await);
    // A stream that ends frees its place.
    drop(streams.pop());
    let reopened = wait_until(ARRIVAL, || async {
        app.agent_get(&alice, "/api/v1/messages/stream")
            .await
            .status()
            == 200
    })
    .await;
    assert!(reopened, "a closed stream's place was not freed");
}

/// The `id:` a client would resume from: the last one the stream sent.
fn position(reader: &EventReader) -> String {
    reader
        .events()
        .iter()
        .rev()
        .find_map(|e| e.id.clone())
        .unwrap_or_else(|| panic!("no id sent yet: {}", reader.text))
}

#[tokio::test]
async fn a_client_that_reconnects_with_its_last_id_gets_what_it_missed_then_live_ones() {
    let a = spawn_app().await;
    let b = spawn_app_on(a.database_url.clone(), |_| {}).await;
    let alice = a.create_agent("alice", false).await;
    let bob = a.create_agent("bob", false).await;
    let (_, token) = a.channel_and_token().await;

    let mut first = EventReader::open(&a, &alice).await;
    first.wait_connected().await;
    let seen = a.store_message(&token, "123456", "seen live").await;
    assert!(first.wait_for_messages(1, ARRIVAL).await, "{}", first.text);
    let last = position(&first);
    assert_eq!(last, seen.to_string());
    drop(first);

    let mut missed = Vec::new();
    for text in ["missed one", "missed two", "missed three"] {
        missed.push(a.store_message(&token, "123456", text).await);
    }
    // Claimed meanwhile: replayed as it is now.
    let resp = a
        .agent_post(
            &alice,
            &format!("/api/v1/messages/{}/claim", missed[1]),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);

    // Back on the other instance, as another agent (every agent sees every message, as in
    // the list).
    let mut back = EventReader::resume(&b, &bob, last.as_bytes()).await;
    back.wait_connected().await;
    let (replay, connected) = back.opening();
    let replayed: Vec<i64> = replay.iter().filter_map(SseEvent::message_id).collect();
    assert_eq!(replayed, missed, "{}", back.text);
    for event in &replay {
        assert_eq!(event.kind.as_deref(), Some("message"));
        assert_eq!(event.id, event.message_id().map(|id| id.to_string()));
    }
    assert_eq!(back.messages()[1]["status"], "assigned");
    assert_eq!(back.messages()[1]["assignedTo"], "alice");
    assert_eq!(connected.id, Some(missed[2].to_string()));

    let live = a.store_message(&token, "123456", "live again").await;
    assert!(back.wait_for_messages(4, ARRIVAL).await, "{}", back.text);
    let mut expected = missed.clone();
    expected.push(live);
    assert_eq!(back.message_ids(), expected, "no duplicate, no gap");
    assert_eq!(position(&back), live.to_string());

    // Caught up: nothing replayed.
    let mut again = EventReader::resume(&a, &alice, live.to_string().as_bytes()).await;
    again.wait_connected().await;
    let (replay, connected) = again.opening();
    assert!(replay.iter().all(|e| e.kind.is_none()), "{}", again.text);
    assert_eq!(connected.id, Some(live.to_string()));
    // Zero is before every message: all of them.
    let mut all = EventReader::resume(&a, &alice, b"0").await;
    all.wait_connected().await;
    assert_eq!(all.message_ids(), [vec![seen], expected].concat());
}

#[tokio::test]
async fn reconnecting_while_messages_keep_arriving_loses_none_and_repeats_none() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let channel = app.create_channel().await;
    let first = app.insert_messages(&channel, 1).await;
    const TOTAL: usize = 300;
    const PER_CONNECTION: usize = 30;
    // The writer stores each connection's share, one statement per message, as fast as they
    // go, starting as the client connects: some land between the stream's subscription and
    // its replay's read, and arrive both ways. It waits for the client's next connection
    // before the next share, so the client reconnects TOTAL / PER_CONNECTION times however
    // fast either side runs.
    let connections = Arc::new(AtomicUsize::new(0));
    let writer = {
        let pool = app.pool.clone();
        let channel = channel.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for share in 1..=TOTAL / PER_CONNECTION {
                let connected = wait_until(ARRIVAL, || {
                    let connections = connections.clone();
                    async move { connections.load(Ordering::SeqCst) >= share }
                })
                .await;
                assert!(connected, "the client did not come back for share {share}");
                for _ in 0..PER_CONNECTION {
                    ids.extend(insert_messages(&pool, &channel, 1).await);
                }
            }
            ids
        })
    };
    let mut received: Vec<i64> = Vec::new();
    let mut last = first[0].to_string();
    while received.len() < TOTAL {
        // A stream's place is freed once the server notices its client left.
        assert!(wait_until(ARRIVAL, || async { app.live.clients() < 8 }).await);
        let connection = connections.fetch_add(1, Ordering::SeqCst) + 1;
        let mut reader = EventReader::resume(&app, &key, last.as_bytes()).await;
        reader.wait_connected().await;
        // This connection's share (replayed or live), then leave.
        let target = (connection * PER_CONNECTION).min(TOTAL);
        let arrived = reader
            .wait_for_messages(target - received.len(), ARRIVAL)
            .await;
        assert!(
            arrived,
            "stalled after {} messages: {}",
            received.len(),
            reader.text
        );
        assert!(
            reader
                .events()
                .iter()
                .all(|e| e.kind.as_deref() != Some("reset") && e.kind.as_deref() != Some("lagged")),
            "{}",
            reader.text
        );
        received.extend(reader.message_ids());
        if let Some(id) = reader.events().iter().rev().find_map(|e| e.id.clone()) {
            last = id;
        }
    }
    let stored = writer.await.unwrap();
    assert_eq!(received, stored, "every message once, in order");
    assert_eq!(connections.load(Ordering::SeqCst), TOTAL / PER_CONNECTION);
}

#[tokio::test]
async fn more_than_a_thousand_missed_is_a_reset_then_live_ones() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let channel = app.create_channel().await;
    let before = app.insert_messages(&channel, 1).await[0];

    let thousand = app.insert_messages(&channel, 1000).await;
    let mut reader = EventReader::resume(&app, &key, before.to_string().as_bytes()).await;
    reader.wait_connected().await;
    assert_eq!(reader.message_ids(), thousand, "exactly 1,000 are replayed");

    let more = app.insert_messages(&channel, 1).await[0];
    let mut reader = EventReader::resume(&app, &key, before.to_string().as_bytes()).await;
    reader.wait_connected().await;
    let (replay, connected) = reader.opening();
    assert_eq!(replay.len(), 1, "{}", reader.text);
    assert_eq!(replay[0].kind.as_deref(), Some("reset"));
    assert_eq!(
        replay[0].data.as_deref(),
        Some(r#"{"reason":"too_many_missed"}"#)
    );
    assert_eq!(
        connected.id,
        Some(more.to_string()),
        "resumes from the newest"
    );
    let live = app.insert_messages(&channel, 1).await[0];
    assert!(
        reader.wait_for(&format!("id: {live}\n"), ARRIVAL).await,
        "{}",
        reader.text
    );
    // The newest may also come live, if this instance heard of it only after the stream
    // began: after a reset the client reloads its list, so it has it either way.
    let ids = reader.message_ids();
    assert!(ids == [live] || ids == [more, live], "{ids:?}");
}

#[tokio::test]
async fn a_last_event_id_that_is_no_id_is_told_to_reload_and_one_from_the_future_replays_nothing() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let channel = app.create_channel().await;
    let stored = app.insert_messages(&channel, 3).await;
    let newest = stored[2];

    let huge = "9".repeat(4000);
    for (n, value) in [
        &b"abc"[..],
        b"-1",
        b"+5",
        b"1e3",
        b"0x10",
        b"3.0",
        b"9223372036854775808",
        huge.as_bytes(),
        b"\xff\xfe",
    ]
    .into_iter()
    .enumerate()
    {
        // An agent each: a stream's place is freed only once the server notices it left.
        let key = app.create_agent(&format!("agent{n}"), false).await;
        let shown = String::from_utf8_lossy(value)
            .chars()
            .take(30)
            .collect::<String>();
        let mut reader = EventReader::resume(&app, &key, value).await;
        reader.wait_connected().await;
        let (replay, connected) = reader.opening();
        let kinds: Vec<_> = replay.iter().filter_map(|e| e.kind.as_deref()).collect();
        assert_eq!(kinds, ["reset"], "{shown}: {}", reader.text);
        assert_eq!(
            replay.iter().find_map(|e| e.data.as_deref()),
            Some(r#"{"reason":"unknown_position"}"#)
        );
        assert_eq!(connected.id, Some(newest.to_string()), "{shown}");
    }

    // An empty one is a first connection; so is none.
    for value in [&b""[..], b"  "] {
        let key = app
            .create_agent(&format!("empty{}", value.len()), false)
            .await;
        let mut reader = EventReader::resume(&app, &key, value).await;
        reader.wait_connected().await;
        let (replay, connected) = reader.opening();
        assert!(replay.iter().all(|e| e.kind.is_none()), "{}", reader.text);
        assert_eq!(connected.id, Some(newest.to_string()));
    }

    // From the future (another database, or the newest erased): nothing replayed, and the
    // position moves back to this database's newest, so the next resume works.
    for future in [newest + 1, newest + 1_000_000, i64::MAX] {
        let key = app.create_agent(&format!("future{future}"), false).await;
        let mut reader = EventReader::resume(&app, &key, future.to_string().as_bytes()).await;
        reader.wait_connected().await;
        let (replay, connected) = reader.opening();
        assert!(replay.iter().all(|e| e.kind.is_none()), "{}", reader.text);
        assert_eq!(connected.id, Some(newest.to_string()));
    }
    let mut reader = EventReader::resume(&app, &key, i64::MAX.to_string().as_bytes()).await;
    reader.wait_connected().await;
    let live = app.insert_messages(&channel, 1).await[0];
    assert!(
        reader.wait_for_messages(1, ARRIVAL).await,
        "{}",
        reader.text
    );
    assert_eq!(position(&reader), live.to_string());
}

#[tokio::test]
async fn a_replay_the_database_cannot_answer_is_a_reset_not_an_error() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let channel = app.create_channel().await;
    let stored = app.insert_messages(&channel, 2).await;

    // The table is locked: the replay's reads wait out the statement timeout.
    let blocker = app.lock_message_table().await;
    let mut reader = EventReader::resume(&app, &key, stored[0].to_string().as_bytes()).await;
    reader.wait_connected().await;
    let (replay, connected) = reader.opening();
    let kinds: Vec<_> = replay.iter().filter_map(|e| e.kind.as_deref()).collect();
    assert_eq!(kinds, ["reset"], "{}", reader.text);
    assert_eq!(
        replay.iter().find_map(|e| e.data.as_deref()),
        Some(r#"{"reason":"unavailable"}"#)
    );
    assert_eq!(connected.id, None, "no position it could not read");
    blocker.rollback().await.unwrap();

    // The stream itself goes on.
    let live = app.insert_messages(&channel, 1).await[0];
    assert!(
        reader.wait_for_messages(1, ARRIVAL).await,
        "{}",
        reader.text
    );
    assert_eq!(reader.message_ids(), [live]);
}

#[tokio::test]
async fn a_lower_id_committed_late_still_arrives_and_the_position_never_goes_back() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let channel = app.create_channel().await;
    let start = app.insert_messages(&channel, 1).await[0];

    // Two writers: the first takes its id, the second takes a higher one and commits first.
    let mut slow = app.pool.begin().await.unwrap();
    let late = insert_messages(&mut *slow, &channel, 1).await[0];
    let early = app.insert_messages(&channel, 1).await[0];
    assert!(late < early);

    // A client that left at `start` sees the committed one replayed...
    let mut reader = EventReader::resume(&app, &key, start.to_string().as_bytes()).await;
    reader.wait_connected().await;
    assert_eq!(reader.message_ids(), [early]);
    // ...and the late one live, once it commits, under the higher position.
    slow.commit().await.unwrap();
    assert!(
        reader.wait_for_messages(2, ARRIVAL).await,
        "{}",
        reader.text
    );
    assert_eq!(reader.message_ids(), [early, late]);
    let events = reader.events();
    let late_event = events
        .iter()
        .find(|e| e.message_id() == Some(late))
        .unwrap();
    assert_eq!(late_event.id, Some(early.to_string()));
    // Resuming from there repeats nothing.
    let mut after = EventReader::resume(&app, &key, position(&reader).as_bytes()).await;
    after.wait_connected().await;
    assert!(after.message_ids().is_empty(), "{}", after.text);
}
