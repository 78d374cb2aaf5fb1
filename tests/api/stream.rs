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
    let last = ids.iter().max().unwrap();
    assert!(
        reader.wait_for(&format!("id: {last}\n"), ARRIVAL).await,
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
