//! CONTRACT §3: the agents' interface.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const API: &str = "/api/v1/messages";

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_call_needs_a_valid_key() {
    let app = spawn_app().await;
    let key = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "hello").await;
    let wrong_secret = format!("{}x", &key[..key.len() - 1]);
    for bad in [
        None,
        Some("nonsense".to_owned()),
        Some(wrong_secret),
        Some(format!("Basic {key}")),
    ] {
        for (method, path) in [
            ("GET", API.to_owned()),
            ("GET", format!("{API}/{id}")),
            ("GET", format!("{API}/stream")),
            ("GET", format!("{API}/export.csv")),
            ("POST", format!("{API}/claim-next")),
            ("POST", format!("{API}/{id}/claim")),
            ("POST", format!("{API}/{id}/release")),
        ] {
            let mut req = app.client.request(method.parse().unwrap(), app.url(&path));
            match &bad {
                Some(b) if b.starts_with("Basic ") => req = req.header("authorization", b),
                Some(b) => req = req.bearer_auth(b),
                None => {}
            }
            let (status, body) = json_of(req.send().await.unwrap()).await;
            assert_eq!(status, 401, "{method} {path} with {bad:?}");
            assert_eq!(body["error"], "unauthorized");
        }
    }
    let (status, _) = json_of(app.agent_get(&key, API).await).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn claim_release_process_walk_the_statuses_and_record_who_and_when() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (channel, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "+1 555 0107", "call me").await;

    let (status, m) = json_of(app.agent_get(&alice, &format!("{API}/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(m["status"], "pending");
    assert_eq!(m["channelId"], channel);
    assert_eq!(m["phoneNo"], "+1 555 0107");
    assert_eq!(m["leaveMessage"], "call me");
    assert_eq!(m["clientIp"], "127.0.0.1");
    assert!(m["receivedAt"].as_str().unwrap().ends_with('Z'));
    let fields: HashSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: HashSet<&str> = [
        "id",
        "channelId",
        "userId",
        "userName",
        "phoneNo",
        "leaveMessage",
        "clientIp",
        "userAgent",
        "receivedAt",
        "status",
        "assignedTo",
        "assignedAt",
        "processedAt",
        "outcome",
        "note",
        "callbackAfter",
        "dueAt",
        "overdueAt",
        "overdue",
        "attempts",
        "maxAttempts",
    ]
    .into();
    assert_eq!(fields, expected);

    // Processing a pending message would skip a state.
    let (status, body) = json_of(
        app.agent_post(
            &alice,
            &format!("{API}/{id}/process"),
            Some(json!({"outcome": "called_back"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["status"], "pending");

    let (status, m) = json_of(
        app.agent_post(&alice, &format!("{API}/{id}/claim"), None)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (m["status"].as_str(), m["assignedTo"].as_str()),
        (Some("assigned"), Some("alice"))
    );
    assert!(m["assignedAt"].is_string());

    let (status, m) = json_of(
        app.agent_post(&alice, &format!("{API}/{id}/release"), None)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(m["status"], "pending");
    assert!(m["assignedTo"].is_null());

    app.agent_post(&alice, &format!("{API}/{id}/claim"), None)
        .await;
    let (status, m) = json_of(
        app.agent_post(
            &alice,
            &format!("{API}/{id}/process"),
            Some(json!({"outcome": "no_answer", "note": "  rang twice  "})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(m["status"], "processed");
    assert_eq!(m["outcome"], "no_answer");
    assert_eq!(m["note"], "rang twice");
    assert!(m["processedAt"].is_string());

    // Nothing leaves processed.
    for action in ["claim", "release"] {
        let (status, body) = json_of(
            app.agent_post(&alice, &format!("{API}/{id}/{action}"), None)
                .await,
        )
        .await;
        assert_eq!(status, 409, "{action}");
        assert_eq!(body["status"], "processed");
        assert_eq!(body["assignedTo"], "alice");
    }

    let history: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT agent, action, from_status, to_status FROM leave_message_event
         WHERE message_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let history: Vec<String> = history
        .into_iter()
        .map(|(a, b, c, d)| format!("{a} {b} {c}->{d}"))
        .collect();
    assert_eq!(
        history,
        [
            "alice claim pending->assigned",
            "alice release assigned->pending",
            "alice claim pending->assigned",
            "alice process assigned->processed"
        ]
    );
}

#[tokio::test]
async fn others_messages_are_409_for_agents_and_allowed_for_admins() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let bob = app.create_agent("bob", false).await;
    let boss = app.create_agent("boss", true).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "one").await;
    app.agent_post(&alice, &format!("{API}/{id}/claim"), None)
        .await;

    for (action, body) in [
        ("claim", None),
        ("release", None),
        ("process", Some(json!({"outcome": "spam"}))),
    ] {
        let (status, err) = json_of(
            app.agent_post(&bob, &format!("{API}/{id}/{action}"), body)
                .await,
        )
        .await;
        assert_eq!(status, 409, "{action}");
        assert_eq!(err["error"], "conflict");
        assert_eq!(err["status"], "assigned");
        assert_eq!(err["assignedTo"], "alice");
        assert!(err["message"].as_str().unwrap().contains("alice"));
    }

    // assign is for admins only.
    let (status, err) = json_of(
        app.agent_post(
            &bob,
            &format!("{API}/{id}/assign"),
            Some(json!({"agent": "bob"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, err["error"].as_str()), (403, Some("forbidden")));
    let (status, m) = json_of(
        app.agent_post(
            &boss,
            &format!("{API}/{id}/assign"),
            Some(json!({"agent": "bob"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(m["assignedTo"], "bob");
    let (status, err) = json_of(
        app.agent_post(
            &boss,
            &format!("{API}/{id}/assign"),
            Some(json!({"agent": "nobody"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("nobody"));

    // Admins may release and process others' messages.
    let (status, _) = json_of(
        app.agent_post(&boss, &format!("{API}/{id}/release"), None)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let (status, m) = json_of(
        app.agent_post(
            &boss,
            &format!("{API}/{id}/assign"),
            Some(json!({"agent": "alice"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, m["status"].as_str()), (200, Some("assigned")));
    let (status, m) = json_of(
        app.agent_post(
            &boss,
            &format!("{API}/{id}/process"),
            Some(json!({"outcome": "wrong_number"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, m["outcome"].as_str()), (200, Some("wrong_number")));
    let processed_by: String =
        sqlx::query_scalar("SELECT processed_by FROM leave_message WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(processed_by, "boss");
    let (status, _) = json_of(
        app.agent_post(
            &boss,
            &format!("{API}/{id}/assign"),
            Some(json!({"agent": "bob"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409, "processed messages cannot be reassigned");
}

#[tokio::test]
async fn bad_ids_parameters_and_bodies_are_400_unknown_ids_404() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "one").await;
    app.agent_post(&alice, &format!("{API}/{id}/claim"), None)
        .await;

    for path in [
        format!("{API}/abc"),
        format!("{API}/-1"),
        format!("{API}/0"),
        format!("{API}/99999999999999999999"),
    ] {
        let (status, body) = json_of(app.agent_get(&alice, &path).await).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"], "bad_request");
        let raw = path.rsplit('/').next().unwrap();
        assert_eq!(body["message"], format!("{raw:?} is not a message id"));
    }
    // The same JSON 400 on every route that takes an id, before the body is looked at; on
    // assign only for an admin (a non-admin is refused first, whatever the id).
    let boss = app.create_agent("chief", true).await;
    for (key, action) in [
        (&alice, "claim"),
        (&alice, "release"),
        (&alice, "process"),
        (&boss, "assign"),
    ] {
        let path = format!("{API}/abc/{action}");
        let (status, body) = json_of(app.agent_post(key, &path, Some(json!({}))).await).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["message"], "\"abc\" is not a message id", "{path}");
    }
    let (status, body) = json_of(
        app.agent_post(&alice, &format!("{API}/abc/assign"), Some(json!({})))
            .await,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let (status, body) = json_of(app.agent_get(&alice, &format!("{API}/987654")).await).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = json_of(
        app.agent_post(&alice, &format!("{API}/987654/claim"), None)
            .await,
    )
    .await;
    assert_eq!(status, 404);

    for query in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "status=done",
        "channelId=nope",
        "phoneNo=abc",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        "cursor=garbage",
    ] {
        let (status, body) = json_of(app.agent_get(&alice, &format!("{API}?{query}")).await).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query}"
        );
    }
    for body in [
        json!({}),
        json!({"outcome": "voicemail"}),
        json!({"outcome": 3}),
        json!({"outcome": "spam", "note": "x".repeat(2001)}),
        json!({"outcome": "spam", "note": "a\u{0}b"}),
        json!({"outcome": "spam", "note": "no \u{202e}rewsna"}),
    ] {
        let (status, err) = json_of(
            app.agent_post(&alice, &format!("{API}/{id}/process"), Some(body.clone()))
                .await,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(err["error"], "bad_request");
    }
    let boss = app.create_agent("boss", true).await;
    for name in ["", " ", "a\u{0}b", "\u{200b}", "bo\u{202e}b"] {
        let (status, _) = json_of(
            app.agent_post(
                &boss,
                &format!("{API}/{id}/assign"),
                Some(json!({"agent": name})),
            )
            .await,
        )
        .await;
        assert_eq!(status, 400, "{name:?}");
    }
    let resp = app
        .client
        .post(app.url(&format!("{API}/{id}/process")))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let status: String = sqlx::query_scalar("SELECT status FROM leave_message WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "assigned", "no bad request changed anything");
}

#[tokio::test]
async fn claim_next_takes_the_oldest_pending_and_204_when_none() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (channel_a, token_a) = app.channel_and_token().await;
    let channel_b = app.create_channel().await;
    let token_b = app.token_for(&channel_b, "v").await;
    let first = app.store_message(&token_a, "111", "first").await;
    let in_b = app.store_message(&token_b, "222", "in b").await;
    let third = app.store_message(&token_a, "333", "third").await;

    let (status, m) = json_of(
        app.agent_post(
            &alice,
            &format!("{API}/claim-next?channelId={channel_b}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, m["id"].as_i64()), (200, Some(in_b)));
    let (_, m) = json_of(
        app.agent_post(&alice, &format!("{API}/claim-next"), None)
            .await,
    )
    .await;
    assert_eq!(m["id"].as_i64(), Some(first));
    let (_, m) = json_of(
        app.agent_post(
            &alice,
            &format!("{API}/claim-next?channelId={channel_a}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(m["id"].as_i64(), Some(third));
    assert_eq!(m["assignedTo"], "alice");
    let resp = app
        .agent_post(&alice, &format!("{API}/claim-next"), None)
        .await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn filters_select_what_they_say() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (channel_a, token_a) = app.channel_and_token().await;
    let channel_b = app.create_channel().await;
    let token_b = app.token_for(&channel_b, "v").await;
    let a1 = app.store_message(&token_a, "+1 555 0107", "a1").await;
    let b1 = app.store_message(&token_b, "15550107", "b1").await;
    let a2 = app.store_message(&token_a, "999 888", "a2").await;
    app.agent_post(&alice, &format!("{API}/{a2}/claim"), None)
        .await;
    let middle: String = sqlx::query_scalar("SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM leave_message WHERE id = $1")
        .bind(b1)
        .fetch_one(&app.pool)
        .await
        .unwrap();

    let ids = |query: String| {
        let app = &app;
        let alice = alice.clone();
        async move {
            let (status, page) =
                json_of(app.agent_get(&alice, &format!("{API}?{query}")).await).await;
            assert_eq!(status, 200, "{query}: {page}");
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(String::new()).await, [a1, b1, a2]);
    assert_eq!(ids("status=pending".into()).await, [a1, b1]);
    assert_eq!(ids("status=assigned".into()).await, [a2]);
    assert_eq!(ids(format!("channelId={channel_a}")).await, [a1, a2]);
    assert_eq!(ids("phoneNo=%2B1%20555%200107".into()).await, [a1, b1]);
    assert_eq!(ids("phoneNo=15550107".into()).await, [a1, b1]);
    assert_eq!(ids("agent=alice".into()).await, [a2]);
    assert_eq!(ids(format!("from={middle}")).await, [b1, a2]);
    assert_eq!(ids(format!("to={middle}")).await, [a1]);
    assert_eq!(
        ids(format!(
            "channelId={channel_b}&status=pending&phoneNo=15550107"
        ))
        .await,
        [b1]
    );
}

#[tokio::test]
async fn paging_returns_each_message_once_even_while_new_ones_arrive() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(app.store_message(&token, "123456", &format!("m{i}")).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("{API}?limit=3&cursor={c}"),
            None => format!("{API}?limit=3"),
        };
        let (status, page) = json_of(app.agent_get(&alice, &query).await).await;
        assert_eq!(status, 200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_i64().unwrap()),
        );
        pages += 1;
        if pages == 1 {
            // New messages arrive while an agent walks the pages.
            for i in 0..2 {
                expected.push(
                    app.store_message(&token, "123456", &format!("late{i}"))
                        .await,
                );
            }
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, expected, "every message exactly once, in order");
    let (_, page) = json_of(app.agent_get(&alice, &format!("{API}?limit=500")).await).await;
    assert!(page["nextCursor"].is_null());
    assert_eq!(page["items"].as_array().unwrap().len(), 9);
}

#[tokio::test]
async fn two_instances_and_many_claimers_never_share_a_message() {
    let a = spawn_app().await;
    let b = spawn_app_on(a.database_url.clone(), |_| {}).await;
    let (_, token) = a.channel_and_token().await;
    let total = 60;
    for i in 0..total {
        a.store_message(&token, "123456", &format!("m{i}")).await;
    }
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(a.create_agent(&format!("agent{i}"), false).await);
    }
    let mut claimers = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let app_url = if i % 2 == 0 {
            a.address.clone()
        } else {
            b.address.clone()
        };
        let client = a.client.clone();
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let resp = client
                    .post(format!("{app_url}{API}/claim-next"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
                match resp.status().as_u16() {
                    200 => got.push(resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap()),
                    204 => break got,
                    other => panic!("claim-next answered {other}"),
                }
            }
        }));
    }
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), total, "every message claimed");
    assert_eq!(distinct.len(), total, "no message claimed twice");
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM leave_message WHERE status = 'pending'")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn non_admins_are_refused_assign_before_their_body_is_read() {
    let app = spawn_app().await;
    let bob = app.create_agent("bob", false).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "hello").await;
    let path = app.url(&format!("{API}/{id}/assign"));
    // No body, a body that is not JSON, a body of the wrong shape: 403 each, never 400.
    for (content_type, body) in [
        (None, ""),
        (Some("application/json"), "{not json"),
        (Some("text/plain"), "agent=bob"),
        (Some("application/json"), r#"{"agent": 42}"#),
    ] {
        let mut req = app.client.post(&path).bearer_auth(&bob).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (status, err) = json_of(req.send().await.unwrap()).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (403, Some("forbidden")),
            "{content_type:?} {body:?}"
        );
    }
}

/// Reads a raw answer until its head has arrived (or the connection ends).
async fn answer_head(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn an_agent_body_that_stops_half_way_is_answered_408() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "hello").await;
    let (status, _) = json_of(
        app.agent_post(&alice, &format!("{API}/{id}/claim"), None)
            .await,
    )
    .await;
    assert_eq!(status, 200);

    let body = r#"{"outcome":"called_back","note":"half of this never comes"}"#;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let head = format!(
        "POST {API}/{id}/process HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {alice}\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        &body[..body.len() / 2]
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // Generous: the server gives up on the body well before this.
    let answer = tokio::time::timeout(Duration::from_secs(60), answer_head(&mut conn))
        .await
        .expect("a body that stopped half way kept its request open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Nothing was processed.
    let (_, m) = json_of(app.agent_get(&alice, &format!("{API}/{id}")).await).await;
    assert_eq!(m["status"], "assigned");
}

#[tokio::test]
async fn failed_keys_from_one_client_are_braked_and_successes_are_not_counted() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    // Well-formed keys the database does not know, and keys that do not parse.
    let unknown = leavemsg::credentials::AgentKey::generate().expose();
    let wrong_secret = format!("{}x", &alice[..alice.len() - 1]);
    let bad = [unknown.as_str(), "nonsense", wrong_secret.as_str()];
    let mut answers = Vec::new();
    for i in 0..100 {
        // Valid calls in between are answered and do not count as failures.
        if i % 10 == 0 {
            let resp = app.agent_get(&alice, API).await;
            if answers.last() != Some(&429) {
                assert_eq!(resp.status(), 200, "a valid key under the limit");
            }
        }
        let resp = app.agent_get(bad[i % bad.len()], API).await;
        let status = resp.status().as_u16();
        if status == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            let (_, err) = json_of(resp).await;
            assert_eq!(err["error"], "too_many_requests");
        } else {
            assert_eq!(status, 401);
        }
        answers.push(status);
    }
    let first_refusal = answers.iter().position(|s| *s == 429);
    assert!(
        first_refusal.is_some_and(|n| n >= 10),
        "bad keys were not braked, or braked too early: {answers:?}"
    );
}
