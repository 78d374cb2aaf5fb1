//! CONTRACT §3.1: call attempts, retries, when messages are due, service levels, a message's
//! history and the queue's counts. Time is moved by the tests through the database (`due_at`
//! set in the past or the future), never by waiting.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::helpers::*;

const API: &str = "/api/v1/messages";

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn time(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    assert!(text.ends_with('Z'), "not UTC: {text}");
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

impl TestApp {
    async fn claim(&self, key: &str, id: i64) -> Value {
        let (status, m) = json_of(
            self.agent_post(key, &format!("{API}/{id}/claim"), None)
                .await,
        )
        .await;
        assert_eq!(status, 200, "claim {id}: {m}");
        m
    }

    async fn attempt(&self, key: &str, id: i64, body: Value) -> (u16, Value) {
        json_of(
            self.agent_post(key, &format!("{API}/{id}/attempts"), Some(body))
                .await,
        )
        .await
    }

    async fn claim_next(&self, key: &str, query: &str) -> Option<i64> {
        let resp = self
            .agent_post(key, &format!("{API}/claim-next{query}"), None)
            .await;
        match resp.status().as_u16() {
            204 => {
                assert!(resp.bytes().await.unwrap().is_empty());
                None
            }
            200 => Some(resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap()),
            other => panic!("claim-next answered {other}"),
        }
    }

    async fn history(&self, key: &str, id: i64) -> Vec<Value> {
        let (status, body) =
            json_of(self.agent_get(key, &format!("{API}/{id}/history")).await).await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    async fn queue(&self, key: &str, query: &str) -> Value {
        let (status, body) =
            json_of(self.agent_get(key, &format!("/api/v1/queue{query}")).await).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn message_json(&self, key: &str, id: i64) -> Value {
        let (status, m) = json_of(self.agent_get(key, &format!("{API}/{id}")).await).await;
        assert_eq!(status, 200, "{m}");
        m
    }

    /// Moves a message's `due_at` to now + `offset` (a PostgreSQL interval such as
    /// `-10 minutes`): how the tests let time pass.
    async fn set_due(&self, id: i64, offset: &str) {
        sqlx::query("UPDATE leave_message SET due_at = now() + $2::interval WHERE id = $1")
            .bind(id)
            .bind(offset)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Sets a channel's callback settings, as `channel update` does.
    async fn set_channel(
        &self,
        channel: &str,
        max_attempts: i16,
        retry_minutes: i32,
        sla_minutes: i32,
    ) {
        sqlx::query(
            "UPDATE web_channel SET max_attempts = $2, retry_minutes = $3, sla_minutes = $4
             WHERE id = $1::uuid",
        )
        .bind(channel)
        .bind(max_attempts)
        .bind(retry_minutes)
        .bind(sla_minutes)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn ids(&self, key: &str, path: &str) -> Vec<i64> {
        let (status, page) = json_of(self.agent_get(key, path).await).await;
        assert_eq!(status, 200, "{path}: {page}");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect()
    }
}

/// The attempt entry of a history (the last one with action `attempt`).
fn last_attempt(history: &[Value]) -> &Value {
    history
        .iter()
        .rev()
        .find(|e| e["action"] == "attempt")
        .expect("an attempt in the history")
}

#[tokio::test]
async fn a_new_message_is_due_when_stored_and_carries_its_channels_settings() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (channel, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "call me").await;
    let m = app.message_json(&alice, id).await;
    assert!(m["callbackAfter"].is_null());
    assert_eq!(time(&m["dueAt"]), time(&m["receivedAt"]));
    assert_eq!(
        time(&m["overdueAt"]) - time(&m["dueAt"]),
        TimeDelta::minutes(240),
        "the default service level"
    );
    assert_eq!(m["overdue"], false);
    assert_eq!(m["attempts"], 0);
    assert_eq!(m["maxAttempts"], 3);

    app.set_channel(&channel, 5, 15, 30).await;
    let m = app.message_json(&alice, id).await;
    assert_eq!(m["maxAttempts"], 5);
    assert_eq!(
        time(&m["overdueAt"]) - time(&m["dueAt"]),
        TimeDelta::minutes(30)
    );
    // Past its service level it is overdue, assigned or not; processed, it no longer is.
    app.set_due(id, "-31 minutes").await;
    assert_eq!(app.message_json(&alice, id).await["overdue"], true);
    app.claim(&alice, id).await;
    assert_eq!(app.message_json(&alice, id).await["overdue"], true);
    let (status, m) = json_of(
        app.agent_post(
            &alice,
            &format!("{API}/{id}/process"),
            Some(json!({"outcome": "called_back"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(m["overdue"], false);
    assert_eq!(m["attempts"], 0, "process records no attempt");
}

#[tokio::test]
async fn each_result_does_what_the_table_says() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (channel, token) = app.channel_and_token().await;
    app.set_channel(&channel, 3, 45, 240).await;

    for (result, outcome) in [
        ("reached", "called_back"),
        ("wrong_number", "wrong_number"),
        ("spam", "spam"),
    ] {
        let id = app.store_message(&token, "123456", result).await;
        app.claim(&alice, id).await;
        let (status, m) = app
            .attempt(
                &alice,
                id,
                json!({"result": result, "note": "  first try  "}),
            )
            .await;
        assert_eq!(status, 200, "{result}: {m}");
        assert_eq!(m["status"], "processed", "{result}");
        assert_eq!(m["outcome"], outcome, "{result}");
        assert_eq!(m["attempts"], 1, "{result}");
        assert_eq!(m["note"], "first try", "{result}");
        assert_eq!(m["assignedTo"], "alice", "{result}");
        assert!(m["processedAt"].is_string(), "{result}");
        assert_eq!(m["overdue"], false);
        let history = app.history(&alice, id).await;
        let entry = last_attempt(&history);
        assert_eq!(entry["result"], result);
        assert_eq!(entry["outcome"], outcome);
        assert_eq!(entry["fromStatus"], "assigned");
        assert_eq!(entry["toStatus"], "processed");
        assert_eq!(entry["note"], "first try");
        assert_eq!(time(&entry["at"]), time(&m["processedAt"]));
    }

    for result in ["no_answer", "busy", "voicemail"] {
        let id = app.store_message(&token, "123456", result).await;
        app.claim(&alice, id).await;
        let (status, m) = app.attempt(&alice, id, json!({"result": result})).await;
        assert_eq!(status, 200, "{result}: {m}");
        assert_eq!(m["status"], "pending", "{result}");
        assert!(m["assignedTo"].is_null(), "{result}");
        assert!(m["assignedAt"].is_null(), "{result}");
        assert!(m["outcome"].is_null(), "{result}");
        assert!(m["processedAt"].is_null(), "{result}");
        assert_eq!(m["attempts"], 1, "{result}");
        assert!(m["note"].is_null(), "no note given, none kept");
        let history = app.history(&alice, id).await;
        let entry = last_attempt(&history);
        assert_eq!(entry["result"], result);
        assert_eq!(entry["toStatus"], "pending");
        assert!(entry["outcome"].is_null());
        assert!(entry["note"].is_null());
        // Due again the channel's retry minutes after the attempt (both are the statement's
        // time, so exactly).
        assert_eq!(
            time(&m["dueAt"]) - time(&entry["at"]),
            TimeDelta::minutes(45),
            "{result}"
        );
        assert_eq!(
            time(&m["overdueAt"]) - time(&m["dueAt"]),
            TimeDelta::minutes(240)
        );
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM leave_message_event WHERE message_id = $1 AND action = 'attempt'",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(count, 1, "one history row per attempt");
    }
}

#[tokio::test]
async fn a_retry_becomes_due_and_the_last_attempt_closes_it_as_no_answer() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let bob = app.create_agent("bob", false).await;
    let (channel, token) = app.channel_and_token().await;
    app.set_channel(&channel, 3, 60, 240).await;
    let id = app.store_message(&token, "+1 555 0107", "call me").await;

    assert_eq!(app.claim_next(&alice, "").await, Some(id));
    let (status, m) = app
        .attempt(
            &alice,
            id,
            json!({"result": "no_answer", "note": "rang out"}),
        )
        .await;
    assert_eq!((status, m["status"].as_str()), (200, Some("pending")));
    assert_eq!(m["note"], "rang out");
    // Not due for an hour: claim-next leaves it, the due list does not show it.
    assert_eq!(app.claim_next(&bob, "").await, None);
    assert!(app.ids(&bob, &format!("{API}?due=true")).await.is_empty());
    assert_eq!(app.ids(&bob, &format!("{API}?due=false")).await, [id]);

    // The hour passes.
    app.set_due(id, "-1 second").await;
    assert_eq!(app.ids(&bob, &format!("{API}?due=true")).await, [id]);
    assert_eq!(app.claim_next(&bob, "").await, Some(id));
    let (status, m) = app.attempt(&bob, id, json!({"result": "busy"})).await;
    assert_eq!((status, m["attempts"].as_i64()), (200, Some(2)));
    assert_eq!(m["status"], "pending");
    assert_eq!(
        m["note"], "rang out",
        "an attempt without a note keeps the last one"
    );

    app.set_due(id, "-1 second").await;
    assert_eq!(app.claim_next(&alice, "").await, Some(id));
    // The third of three attempts: unanswered, it closes the message.
    let (status, m) = app
        .attempt(
            &alice,
            id,
            json!({"result": "voicemail", "note": "left a message"}),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["status"], "processed");
    assert_eq!(m["outcome"], "no_answer");
    assert_eq!(m["attempts"], 3);
    assert_eq!(m["maxAttempts"], 3);
    assert_eq!(m["note"], "left a message");
    assert_eq!(m["overdue"], false);
    let processed_by: String =
        sqlx::query_scalar("SELECT processed_by FROM leave_message WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(processed_by, "alice");

    // Closed: no more attempts, nothing left to claim.
    let (status, err) = app.attempt(&alice, id, json!({"result": "reached"})).await;
    assert_eq!((status, err["status"].as_str()), (409, Some("processed")));
    assert_eq!(app.claim_next(&alice, "").await, None);

    let results: Vec<(String, String)> = app
        .history(&alice, id)
        .await
        .iter()
        .filter(|e| e["action"] == "attempt")
        .map(|e| {
            (
                format!(
                    "{} {}",
                    e["actor"].as_str().unwrap(),
                    e["result"].as_str().unwrap()
                ),
                e["toStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("alice no_answer".to_owned(), "pending".to_owned()),
            ("bob busy".to_owned(), "pending".to_owned()),
            ("alice voicemail".to_owned(), "processed".to_owned()),
        ]
    );
}

#[tokio::test]
async fn one_attempt_allowed_closes_at_the_first_unanswered_call_and_a_lowered_limit_applies() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (channel, token) = app.channel_and_token().await;
    app.set_channel(&channel, 1, 60, 240).await;
    let id = app.store_message(&token, "123456", "once").await;
    app.claim(&alice, id).await;
    let (status, m) = app.attempt(&alice, id, json!({"result": "busy"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            m["status"].as_str(),
            m["outcome"].as_str(),
            m["attempts"].as_i64()
        ),
        (Some("processed"), Some("no_answer"), Some(1))
    );

    // Two attempts made under a limit of 5; the limit goes down to 2: the next unanswered
    // attempt is past it and closes the message.
    app.set_channel(&channel, 5, 60, 240).await;
    let id = app.store_message(&token, "123456", "lowered").await;
    for _ in 0..2 {
        app.set_due(id, "-1 second").await;
        app.claim(&alice, id).await;
        let (status, m) = app
            .attempt(&alice, id, json!({"result": "no_answer"}))
            .await;
        assert_eq!((status, m["status"].as_str()), (200, Some("pending")));
    }
    app.set_channel(&channel, 2, 60, 240).await;
    app.claim(&alice, id).await;
    let (status, m) = app
        .attempt(&alice, id, json!({"result": "no_answer"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            m["status"].as_str(),
            m["outcome"].as_str(),
            m["attempts"].as_i64()
        ),
        (Some("processed"), Some("no_answer"), Some(3))
    );
}

#[tokio::test]
async fn only_the_assignee_or_an_admin_records_attempts_on_assigned_messages() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let bob = app.create_agent("bob", false).await;
    let boss = app.create_agent("boss", true).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "one").await;

    // Pending: nobody's yet.
    let (status, err) = app.attempt(&alice, id, json!({"result": "reached"})).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"], "conflict");
    assert_eq!(err["status"], "pending");
    assert!(err["assignedTo"].is_null());

    app.claim(&alice, id).await;
    let (status, err) = app.attempt(&bob, id, json!({"result": "reached"})).await;
    assert_eq!(status, 409);
    assert_eq!(
        (err["status"].as_str(), err["assignedTo"].as_str()),
        (Some("assigned"), Some("alice"))
    );
    assert!(err["message"].as_str().unwrap().contains("alice"));
    let m = app.message_json(&alice, id).await;
    assert_eq!(
        (m["status"].as_str(), m["attempts"].as_i64()),
        (Some("assigned"), Some(0))
    );

    // An admin may, on anyone's message.
    let (status, m) = app
        .attempt(
            &boss,
            id,
            json!({"result": "no_answer", "note": "tried for alice"}),
        )
        .await;
    assert_eq!((status, m["status"].as_str()), (200, Some("pending")));
    let history = app.history(&alice, id).await;
    assert_eq!(last_attempt(&history)["actor"], "boss");

    // Unknown and malformed ids.
    let (status, err) = app
        .attempt(&alice, 999_999, json!({"result": "reached"}))
        .await;
    assert_eq!((status, err["error"].as_str()), (404, Some("not_found")));
    for bad in ["0", "-1", "abc", "1.5", "99999999999999999999"] {
        let (status, err) = json_of(
            app.agent_post(
                &alice,
                &format!("{API}/{bad}/attempts"),
                Some(json!({"result": "reached"})),
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    // Without a valid key: 401, whatever the body.
    for path in [
        format!("{API}/{id}/attempts"),
        format!("{API}/{id}/history"),
        "/api/v1/queue".to_owned(),
    ] {
        let method = if path.ends_with("attempts") {
            "POST"
        } else {
            "GET"
        };
        let resp = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth("lm_nonsense")
            .json(&json!({"result": "reached"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let resp = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    // Other methods: 405.
    let resp = app.agent_get(&alice, &format!("{API}/{id}/attempts")).await;
    assert_eq!(resp.status(), 405);
    let resp = app
        .agent_post(&alice, &format!("{API}/{id}/history"), None)
        .await;
    assert_eq!(resp.status(), 405);
    let resp = app.agent_post(&alice, "/api/v1/queue", None).await;
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn bad_results_and_notes_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "one").await;
    app.claim(&alice, id).await;

    for body in [
        json!({}),
        json!({"note": "no result"}),
        json!({"result": null}),
        json!({"result": ""}),
        json!({"result": "REACHED"}),
        json!({"result": " reached"}),
        json!({"result": "called_back"}),
        json!({"result": "answered"}),
        json!({"result": 1}),
        json!({"result": ["reached"]}),
        json!({"result": "reached", "note": "x".repeat(2001)}),
        json!({"result": "reached", "note": "a\u{0}b"}),
        json!({"result": "reached", "note": "bell\u{7}"}),
        json!({"result": "reached", "note": "no \u{202e}rewsna"}),
        json!({"result": "reached", "note": 42}),
        json!({"result": "reached", "note": {"x": 1}}),
        json!(["reached"]),
        json!("reached"),
    ] {
        let (status, err) = app.attempt(&alice, id, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], "bad_request");
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    for raw in ["{", "result=reached", "", "\u{feff}{}"] {
        let resp = app
            .client
            .post(app.url(&format!("{API}/{id}/attempts")))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{raw:?}");
    }
    let resp = app
        .client
        .post(app.url(&format!("{API}/{id}/attempts")))
        .bearer_auth(&alice)
        .header("content-type", "text/plain")
        .body(r#"{"result":"reached"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "not JSON");
    let resp = app
        .client
        .post(app.url(&format!("{API}/{id}/attempts")))
        .bearer_auth(&alice)
        .json(&json!({"result": "reached", "note": "x".repeat(20_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "over the body limit");

    let m = app.message_json(&alice, id).await;
    assert_eq!(
        (
            m["status"].as_str(),
            m["attempts"].as_i64(),
            m["assignedTo"].as_str()
        ),
        (Some("assigned"), Some(0), Some("alice")),
        "no bad request changed anything"
    );
    let actions: Vec<String> = app
        .history(&alice, id)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["stored", "claim"]);

    // The longest note, and a blank one (no note).
    let (status, m) = app
        .attempt(
            &alice,
            id,
            json!({"result": "no_answer", "note": "é".repeat(2000)}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(m["note"].as_str().unwrap().chars().count(), 2000);
    app.set_due(id, "-1 second").await;
    app.claim(&alice, id).await;
    let (status, m) = app
        .attempt(
            &alice,
            id,
            json!({"result": "no_answer", "note": " \n\u{200b} "}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        m["note"].as_str().unwrap().chars().count(),
        2000,
        "a blank note is no note"
    );
    let history = app.history(&alice, id).await;
    assert!(last_attempt(&history)["note"].is_null());
}

#[tokio::test]
async fn hostile_notes_are_kept_exactly_and_exported_safely() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let notes = [
        "<script>alert(1)</script>",
        "'); DROP TABLE leave_message; --",
        "=HYPERLINK(\"http://evil.example\",\"click\")",
        "line one\nline two\ttabbed, \"quoted\";=1+1",
        "emoji 📞 and ünïcödé, RTL שלום",
        "\\u0000 as text, %00, ${jndi:ldap://x}",
    ];
    let mut ids = Vec::new();
    for note in notes {
        let id = app.store_message(&token, "123456", note).await;
        app.claim(&alice, id).await;
        let (status, m) = app
            .attempt(&alice, id, json!({"result": "no_answer", "note": note}))
            .await;
        assert_eq!(status, 200, "{note}");
        assert_eq!(m["note"], note);
        assert_eq!(last_attempt(&app.history(&alice, id).await)["note"], note);
        ids.push(id);
    }
    let table: i64 = sqlx::query_scalar("SELECT count(*) FROM leave_message")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(table, notes.len() as i64);

    let csv = app
        .agent_get(&alice, &format!("{API}/export.csv"))
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let note_at = header.iter().position(|h| h == "note").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), notes.len());
    assert_eq!(
        &rows[2][note_at],
        "'=HYPERLINK(\"http://evil.example\",\"click\")"
    );
    assert_eq!(
        &rows[3][note_at],
        "line one\nline two\ttabbed, \"quoted\";'=1+1"
    );
    assert_eq!(&rows[0][note_at], notes[0]);
}

#[tokio::test]
async fn claim_next_takes_the_earliest_due_and_never_one_due_later() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let channel = app.create_channel().await;
    let other = app.create_channel().await;
    // Stored in this order: later, b, c, d, e; f in another channel.
    let ids = app.insert_messages(&channel, 5).await;
    let [later, b, c, d, e] = ids[..] else {
        unreachable!()
    };
    let f = app.insert_messages(&other, 1).await[0];
    // One statement stored them all at once; spread their received times.
    sqlx::query(
        "UPDATE leave_message SET received_at = now() - interval '1 day' + id * interval '1 second'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    app.set_due(later, "1 hour").await; // the visitor asked to be called later
    app.set_due(b, "-10 minutes").await;
    app.set_due(c, "-20 minutes").await;
    // d and e due at the same time: the one received first goes first.
    sqlx::query(
        "UPDATE leave_message SET due_at = now() - interval '30 minutes' WHERE id IN ($1, $2, $3)",
    )
    .bind(d)
    .bind(e)
    .bind(f)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE leave_message SET received_at = now() - interval '2 days' WHERE id = $1")
        .bind(e)
        .execute(&app.pool)
        .await
        .unwrap();

    assert_eq!(
        app.claim_next(&alice, &format!("?channelId={channel}"))
            .await,
        Some(e)
    );
    assert_eq!(
        app.claim_next(&alice, "").await,
        Some(d),
        "same due: received first"
    );
    assert_eq!(app.claim_next(&alice, "").await, Some(f));
    assert_eq!(app.claim_next(&alice, "").await, Some(c));
    assert_eq!(
        app.claim_next(&alice, &format!("?channelId={other}")).await,
        None
    );
    assert_eq!(app.claim_next(&alice, "").await, Some(b));
    assert_eq!(
        app.claim_next(&alice, "").await,
        None,
        "only a message due later is left"
    );
    assert_eq!(app.message_json(&alice, later).await["status"], "pending");
    // claim by id works at any time.
    let m = app.claim(&alice, later).await;
    assert_eq!(m["assignedTo"], "alice");
}

#[tokio::test]
async fn claim_next_orders_equal_due_times_by_received_time_then_id() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let channel = app.create_channel().await;
    // One statement: the same received_at and due_at for all three.
    let ids = app.insert_messages(&channel, 3).await;
    let mut got = Vec::new();
    while let Some(id) = app.claim_next(&alice, "").await {
        got.push(id);
    }
    assert_eq!(got, ids);
}

#[tokio::test]
async fn two_instances_racing_claim_next_never_share_a_message_nor_take_one_due_later() {
    let a = spawn_app().await;
    let b = spawn_app_on(a.database_url.clone(), |_| {}).await;
    let channel = a.create_channel().await;
    let due = a.insert_messages(&channel, 40).await;
    let later = a.insert_messages(&channel, 10).await;
    sqlx::query("UPDATE leave_message SET due_at = now() + interval '1 hour' WHERE id = ANY($1)")
        .bind(&later)
        .execute(&a.pool)
        .await
        .unwrap();
    let mut claimers = Vec::new();
    for i in 0..6 {
        let key = a.create_agent(&format!("agent{i}"), false).await;
        let address = if i % 2 == 0 {
            a.address.clone()
        } else {
            b.address.clone()
        };
        let client = a.client.clone();
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let resp = client
                    .post(format!("{address}{API}/claim-next"))
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
    assert_eq!(all.len(), due.len(), "every due message claimed once");
    assert_eq!(distinct, due.iter().copied().collect::<HashSet<_>>());
    let pending: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM leave_message WHERE status = 'pending' ORDER BY id")
            .fetch_all(&a.pool)
            .await
            .unwrap();
    assert_eq!(pending, later, "the ones due later wait");
}

#[tokio::test]
async fn attempts_racing_on_one_message_count_once() {
    let a = spawn_app().await;
    let b = spawn_app_on(a.database_url.clone(), |_| {}).await;
    let alice = a.create_agent("alice", false).await;
    let boss = a.create_agent("boss", true).await;
    let channel = a.create_channel().await;
    for round in 0..8 {
        let id = a.insert_messages(&channel, 1).await[0];
        a.claim(&alice, id).await;
        let (first, second) = tokio::join!(
            a.attempt(
                &alice,
                id,
                json!({"result": "no_answer", "note": format!("alice {round}")})
            ),
            b.attempt(
                &boss,
                id,
                json!({"result": "busy", "note": format!("boss {round}")})
            ),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}: {first:?} {second:?}");
        let (attempts, events): (i16, i64) = sqlx::query_as(
            "SELECT m.attempts, (SELECT count(*) FROM leave_message_event e
                                 WHERE e.message_id = m.id AND e.action = 'attempt')
             FROM leave_message m WHERE m.id = $1",
        )
        .bind(id)
        .fetch_one(&a.pool)
        .await
        .unwrap();
        assert_eq!((attempts, events), (1, 1), "round {round}");
    }
}

#[tokio::test]
async fn history_tells_everything_that_happened_oldest_first() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let bob = app.create_agent("bob", false).await;
    let boss = app.create_agent("boss", true).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "call me").await;

    let history = app.history(&alice, id).await;
    assert_eq!(history.len(), 1);
    let stored = &history[0];
    assert_eq!(stored["action"], "stored");
    assert!(stored["actor"].is_null());
    assert!(stored["fromStatus"].is_null());
    assert_eq!(stored["toStatus"], "pending");
    assert!(stored["result"].is_null());
    assert!(stored["note"].is_null());
    let received = time(&app.message_json(&alice, id).await["receivedAt"]);
    assert_eq!(time(&stored["at"]), received);
    let keys: HashSet<&str> = stored
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "at",
        "actor",
        "action",
        "fromStatus",
        "toStatus",
        "result",
        "note",
    ] {
        assert!(keys.contains(key), "history entries have {key}");
    }

    app.claim(&alice, id).await;
    app.agent_post(&alice, &format!("{API}/{id}/release"), None)
        .await;
    let (status, _) = json_of(
        app.agent_post(
            &boss,
            &format!("{API}/{id}/assign"),
            Some(json!({"agent": "bob"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    app.attempt(
        &bob,
        id,
        json!({"result": "no_answer", "note": "rang 10 times"}),
    )
    .await;
    app.set_due(id, "-1 second").await;
    assert_eq!(app.claim_next(&alice, "").await, Some(id));
    let (status, _) = json_of(
        app.agent_post(
            &alice,
            &format!("{API}/{id}/process"),
            Some(json!({"outcome": "called_back", "note": "sorted by e-mail"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);

    let history = app.history(&bob, id).await;
    let lines: Vec<String> = history
        .iter()
        .map(|e| {
            format!(
                "{} {} {}->{} {} {}",
                e["actor"].as_str().unwrap_or("-"),
                e["action"].as_str().unwrap(),
                e["fromStatus"].as_str().unwrap_or("-"),
                e["toStatus"].as_str().unwrap(),
                e["result"].as_str().unwrap_or("-"),
                e["note"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            "- stored -->pending - -",
            "alice claim pending->assigned - -",
            "alice release assigned->pending - -",
            "boss assign pending->assigned - -",
            "bob attempt assigned->pending no_answer rang 10 times",
            "alice claim pending->assigned - -",
            "alice process assigned->processed - sorted by e-mail",
        ]
    );
    assert_eq!(history[3]["assignedTo"], "bob");
    assert_eq!(history[6]["outcome"], "called_back");
    let times: Vec<DateTime<Utc>> = history.iter().map(|e| time(&e["at"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );

    // A release because the assignee was disabled says so.
    let carol = app.create_agent("carol", false).await;
    let other = app.store_message(&token, "123456", "another").await;
    app.claim(&carol, other).await;
    let carol_name = leavemsg::domain::AgentName::parse("carol").unwrap();
    app.store.disable_agent(&carol_name).await.unwrap();
    let history = app.history(&alice, other).await;
    let last = history.last().unwrap();
    assert_eq!(
        (
            last["action"].as_str(),
            last["actor"].as_str(),
            last["reason"].as_str()
        ),
        (Some("release"), Some("carol"), Some("agent_disabled"))
    );
    assert_eq!(
        (last["fromStatus"].as_str(), last["toStatus"].as_str()),
        (Some("assigned"), Some("pending"))
    );
    assert!(
        history[..history.len() - 1]
            .iter()
            .all(|e| e["reason"].is_null())
    );

    // No such message, and ids that are not ids.
    let (status, err) = json_of(
        app.agent_get(&alice, &format!("{API}/999999/history"))
            .await,
    )
    .await;
    assert_eq!((status, err["error"].as_str()), (404, Some("not_found")));
    for bad in ["0", "x", "-3"] {
        let (status, _) =
            json_of(app.agent_get(&alice, &format!("{API}/{bad}/history")).await).await;
        assert_eq!(status, 400, "{bad}");
    }
    // A purged message has no history left.
    sqlx::query("DELETE FROM leave_message WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, _) = json_of(app.agent_get(&alice, &format!("{API}/{id}/history")).await).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn queue_counts_say_what_waits_what_is_due_late_and_whose() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let bob = app.create_agent("bob", false).await;
    let zero = json!({"pending": 0, "due": 0, "overdue": 0, "assigned": 0, "mine": 0, "oldestDueAgeSeconds": 0});
    assert_eq!(app.queue(&alice, "").await, zero);

    let a = app.create_channel().await;
    let b = app.create_channel().await;
    app.set_channel(&b, 3, 60, 30).await;
    let in_a = app.insert_messages(&a, 6).await;
    let in_b = app.insert_messages(&b, 3).await;
    // Channel a (service level 240 min): two due now, one due in an hour, one overdue by
    // 2 hours (due 6 hours ago), one assigned to alice and overdue, one processed long ago.
    app.set_due(in_a[2], "1 hour").await;
    app.set_due(in_a[3], "-6 hours").await;
    app.set_due(in_a[4], "-5 hours").await;
    app.claim(&alice, in_a[4]).await;
    app.set_due(in_a[5], "-10 days").await;
    app.claim(&bob, in_a[5]).await;
    app.agent_post(
        &bob,
        &format!("{API}/{}/process", in_a[5]),
        Some(json!({"outcome": "spam"})),
    )
    .await;
    // Channel b (service level 30 min): one due 40 minutes ago (overdue), one assigned to
    // bob, one due tomorrow.
    app.set_due(in_b[0], "-40 minutes").await;
    app.claim(&bob, in_b[1]).await;
    app.set_due(in_b[2], "1 day").await;

    let all = app.queue(&alice, "").await;
    assert_eq!(all["pending"], 6, "{all}");
    assert_eq!(all["due"], 4, "{all}");
    assert_eq!(all["overdue"], 3, "{all}");
    assert_eq!(all["assigned"], 2, "{all}");
    assert_eq!(all["mine"], 1, "{all}");
    let age = all["oldestDueAgeSeconds"].as_i64().unwrap();
    // The oldest due is in_a[3], due 6 hours ago (and the test does not take an hour).
    assert!((6 * 3600..7 * 3600).contains(&age), "{all}");
    assert_eq!(app.queue(&bob, "").await["mine"], 1);

    let only_b = app.queue(&bob, &format!("?channelId={b}")).await;
    assert_eq!(only_b["pending"], 2, "{only_b}");
    assert_eq!(only_b["due"], 1, "{only_b}");
    assert_eq!(only_b["overdue"], 1, "{only_b}");
    assert_eq!(only_b["assigned"], 1, "{only_b}");
    assert_eq!(only_b["mine"], 1, "{only_b}");
    let age = only_b["oldestDueAgeSeconds"].as_i64().unwrap();
    assert!((40 * 60..100 * 60).contains(&age), "{only_b}");
    assert_eq!(
        app.queue(&alice, &format!("?channelId={b}")).await["mine"],
        0
    );
    assert_eq!(
        app.queue(&alice, "?channelId=").await,
        all,
        "empty is no filter"
    );

    // Nothing due: age 0 even with messages waiting for later.
    let c = app.create_channel().await;
    let later = app.insert_messages(&c, 1).await[0];
    app.set_due(later, "2 hours").await;
    let only_c = app.queue(&alice, &format!("?channelId={c}")).await;
    assert_eq!(
        only_c,
        json!({"pending": 1, "due": 0, "overdue": 0, "assigned": 0, "mine": 0, "oldestDueAgeSeconds": 0})
    );

    for bad in [
        "?channelId=nope",
        "?channelId=00000000-0000-0000-0000",
        "?channelId=%00",
    ] {
        let (status, err) =
            json_of(app.agent_get(&alice, &format!("/api/v1/queue{bad}")).await).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn due_and_overdue_filter_the_list_and_the_export() {
    let app = spawn_app().await;
    let alice = app.create_agent("alice", false).await;
    let channel = app.create_channel().await;
    let ids = app.insert_messages(&channel, 5).await;
    let [due_now, later, overdue, overdue_mine, done] = ids[..] else {
        unreachable!()
    };
    app.set_due(later, "3 hours").await;
    app.set_due(overdue, "-5 hours").await;
    app.set_due(overdue_mine, "-5 hours").await;
    app.claim(&alice, overdue_mine).await;
    app.set_due(done, "-5 hours").await;
    app.claim(&alice, done).await;
    app.attempt(&alice, done, json!({"result": "reached"}))
        .await;

    let list = |query: &str| {
        let path = format!("{API}?{query}");
        let (app, alice) = (&app, alice.clone());
        async move { app.ids(&alice, &path).await }
    };
    assert_eq!(list("due=true").await, [due_now, overdue]);
    assert_eq!(list("due=false").await, [later, overdue_mine, done]);
    assert_eq!(list("due=false&status=pending").await, [later]);
    assert_eq!(list("overdue=true").await, [overdue, overdue_mine]);
    assert_eq!(list("overdue=false").await, [due_now, later, done]);
    assert_eq!(list("overdue=true&status=assigned").await, [overdue_mine]);
    assert_eq!(list("overdue=true&due=true").await, [overdue]);
    assert_eq!(list("overdue=true&agent=alice").await, [overdue_mine]);
    assert_eq!(list("due=&overdue=").await, ids, "empty is no filter");
    // Pages of a filtered list.
    let (_, page) = json_of(
        app.agent_get(&alice, &format!("{API}?overdue=true&limit=1"))
            .await,
    )
    .await;
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(
        list(&format!("overdue=true&limit=1&cursor={cursor}")).await,
        [overdue_mine]
    );

    for bad in [
        "due=yes",
        "due=1",
        "overdue=TRUE",
        "overdue=maybe",
        "due=true&overdue=0",
    ] {
        for path in [format!("{API}?{bad}"), format!("{API}/export.csv?{bad}")] {
            let (status, err) = json_of(app.agent_get(&alice, &path).await).await;
            assert_eq!(
                (status, err["error"].as_str()),
                (400, Some("bad_request")),
                "{path}"
            );
        }
    }

    let csv = app
        .agent_get(&alice, &format!("{API}/export.csv?overdue=true"))
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][column("id")], overdue.to_string());
    assert_eq!(&rows[0][column("overdue")], "true");
    assert_eq!(&rows[0][column("attempts")], "0");
    assert_eq!(&rows[0][column("maxAttempts")], "3");
    assert_eq!(&rows[0][column("callbackAfter")], "");
    assert!(rows[0][column("dueAt")].ends_with('Z'));
    assert!(rows[0][column("overdueAt")].ends_with('Z'));
    assert_eq!(&rows[1][column("id")], overdue_mine.to_string());
    let csv = app
        .agent_get(
            &alice,
            &format!("{API}/export.csv?due=false&status=processed"),
        )
        .await
        .text()
        .await
        .unwrap();
    let rows = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][0], done.to_string());
    assert_eq!(&rows[0][column("attempts")], "1");
    assert_eq!(&rows[0][column("overdue")], "false");
}
