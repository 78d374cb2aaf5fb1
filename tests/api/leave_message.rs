//! CONTRACT §2.2: doLeaveMessage, every row of its table.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::helpers::*;

const SUCCESS: &str = r#"{"returnCode":"0","resultCode":"0","description":"","resultDesc":"Save leaveMessage success!"}"#;

/// The vendor document's example request, header for header, with a real token.
fn seed_request(port: u16, token: &str) -> Vec<u8> {
    let body = "{\n    \"phoneNo\": \"123456\",\n    \"leaveMessage\": \"12122331\"\n}";
    format!(
        "POST {BASE}/doLeaveMessage HTTP/1.1\r\n\
         host: 127.0.0.1:{port}\r\n\
         connection: close\r\n\
         x-forwarded-for: 10.10.10.3, 10.10.10.4\r\n\
         x-real-ip: 10.10.10.5\r\n\
         content-length: {}\r\n\
         remote-host: 10.10.10.6\r\n\
         user-agent: java/socket\r\n\
         content-type: application/json; charset=utf-8\r\n\
         cookie: JSESSION*****#*#*****3\r\n\
         ccmessaging-token: {token}\r\n\
         accept: */*\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn the_seed_example_gets_the_seed_response_and_stores_the_row() {
    let app = spawn_app().await;
    let (channel, token) = app.channel_and_token().await;

    let (status, body) = app.raw_request(&seed_request(app.port, &token)).await;
    assert_eq!(status, 200);
    assert_eq!(body, SUCCESS);

    let row: String = sqlx::query_scalar(
        "SELECT jsonb_build_object(
                    'channel_id', channel_id, 'user_id', user_id, 'user_name', user_name,
                    'phone_no', phone_no, 'phone_digits', phone_digits, 'message', message,
                    'client_ip', host(client_ip), 'forwarded_for', forwarded_for,
                    'user_agent', user_agent, 'status', status,
                    'received_recently', received_at > now() - interval '1 hour',
                    'callback_after', callback_after, 'due_when_received', due_at = received_at,
                    'attempts', attempts)::text
         FROM leave_message",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&row).unwrap(),
        json!({
            "channel_id": channel, "user_id": "visitor-1", "user_name": "Visitor",
            "phone_no": "123456", "phone_digits": "123456", "message": "12122331",
            "client_ip": "127.0.0.1", "forwarded_for": "10.10.10.3, 10.10.10.4",
            "user_agent": "java/socket", "status": "pending", "received_recently": true,
            "callback_after": null, "due_when_received": true, "attempts": 0
        })
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_recorded() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = leavemsg::domain::TrustedProxies::parse("127.0.0.1/32").unwrap();
    })
    .await;
    let (_, token) = app.channel_and_token().await;
    let (status, _) = app.raw_request(&seed_request(app.port, &token)).await;
    assert_eq!(status, 200);
    let ip: String = sqlx::query_scalar("SELECT host(client_ip) FROM leave_message")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(ip, "10.10.10.4");
}

#[tokio::test]
async fn the_token_is_found_among_other_cookies_or_in_its_header() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let msg = json!({"phoneNo": "+1 555 0107", "leaveMessage": "call me"});

    let resp = app
        .client
        .post(app.facade("doLeaveMessage"))
        .header(
            "cookie",
            format!("JSESSIONID=abc; theme=dark; ccmessaging-token={token}; lang=en"),
        )
        .json(&msg)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), SUCCESS);

    let msg2 = json!({"phoneNo": "+1 555 0107", "leaveMessage": "call me again"});
    let resp = app
        .client
        .post(app.facade("doLeaveMessage"))
        .header("ccmessaging-token", &token)
        .json(&msg2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), SUCCESS);
    assert_eq!(app.message_count().await, 2);
}

#[tokio::test]
async fn content_type_is_matched_case_insensitively() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    for (i, content_type) in [
        "application/json",
        "application/json; charset=UTF-8",
        "Application/JSON;Charset=utf-8",
        "application/json; charset=\"utf-8\"",
    ]
    .iter()
    .enumerate()
    {
        let resp = app
            .client
            .post(app.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={token}"))
            .header("content-type", *content_type)
            .body(format!(r#"{{"phoneNo":"123456","leaveMessage":"ct {i}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), SUCCESS, "{content_type}");
    }
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin1",
        "",
    ] {
        let mut req = app
            .client
            .post(app.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={token}"))
            .body(r#"{"phoneNo":"123456","leaveMessage":"wrong type"}"#);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let (status, body) = reply(req.send().await.unwrap()).await;
        assert_eq!(status, 415, "{content_type:?}");
        assert_eq!(body["returnCode"], "3");
        assert_eq!(body["resultCode"], "3");
        assert_eq!(body["description"], "the leaveMessageParams is error.");
    }
    assert_eq!(app.message_count().await, 4);
}

#[tokio::test]
async fn bad_parameters_answer_code_3_naming_the_field_and_store_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let long = "x".repeat(2001);
    let cases: Vec<(String, &str)> = vec![
        (
            json!({"leaveMessage": "hi"}).to_string(),
            "phoneNo is missing",
        ),
        (
            json!({"phoneNo": null, "leaveMessage": "hi"}).to_string(),
            "phoneNo must not be null",
        ),
        (
            json!({"phoneNo": 123456, "leaveMessage": "hi"}).to_string(),
            "phoneNo must be a string",
        ),
        (
            json!({"phoneNo": "   ", "leaveMessage": "hi"}).to_string(),
            "phoneNo must not be blank",
        ),
        (
            json!({"phoneNo": "call me", "leaveMessage": "hi"}).to_string(),
            "phoneNo may contain only",
        ),
        (
            json!({"phoneNo": "+-()", "leaveMessage": "hi"}).to_string(),
            "phoneNo must contain at least 3 digits",
        ),
        (
            json!({"phoneNo": "1".repeat(33), "leaveMessage": "hi"}).to_string(),
            "phoneNo must be 3 to 32",
        ),
        (
            json!({"phoneNo": "123456"}).to_string(),
            "leaveMessage is missing",
        ),
        (
            json!({"phoneNo": "123456", "leaveMessage": true}).to_string(),
            "leaveMessage must be a string",
        ),
        (
            json!({"phoneNo": "123456", "leaveMessage": {"text": "hi"}}).to_string(),
            "leaveMessage must be a string",
        ),
        (
            json!({"phoneNo": "123456", "leaveMessage": " \n\t "}).to_string(),
            "leaveMessage must not be blank",
        ),
        (
            json!({"phoneNo": "123456", "leaveMessage": long}).to_string(),
            "leaveMessage must be at most 2000",
        ),
        (
            json!({"phoneNo": "123456", "leaveMessage": "nul \u{0} here"}).to_string(),
            "control characters",
        ),
        (
            json!({"phoneNo": "123456", "leaveMessage": "escape \u{1b}[2J"}).to_string(),
            "control characters",
        ),
        (
            "{\"phoneNo\": \"123456\", \"leaveMessage\": ".to_owned(),
            "not valid JSON",
        ),
        ("not json at all".to_owned(), "not valid JSON"),
        ("[\"123456\", \"hi\"]".to_owned(), "must be a JSON object"),
        ("42".to_owned(), "must be a JSON object"),
        (String::new(), "not valid JSON"),
        (
            format!("{{\"x\":{}{}}}", "[".repeat(5000), "]".repeat(5000)),
            "nested more than 32 levels",
        ),
    ];
    for (body, expected) in cases {
        let resp = app
            .client
            .post(app.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={token}"))
            .header("content-type", "application/json; charset=utf-8")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, got) = reply(resp).await;
        assert_eq!(status, 200, "{body:.80}");
        assert_eq!(got["returnCode"], "3", "{body:.80}");
        assert_eq!(got["resultCode"], "3");
        assert_eq!(got["description"], "the leaveMessageParams is error.");
        let desc = got["resultDesc"].as_str().unwrap();
        assert!(desc.contains(expected), "{body:.80}: {desc}");
    }
    assert_eq!(app.message_count().await, 0);
}

#[tokio::test]
async fn invalid_utf8_is_refused_with_code_3() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let body: &[u8] = b"{\"phoneNo\":\"123456\",\"leaveMessage\":\"caf\xe9\"}";
    let mut request = format!(
        "POST {BASE}/doLeaveMessage HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: application/json\r\ncookie: ccmessaging-token={token}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let (status, text) = app.raw_request(&request).await;
    assert_eq!(status, 200);
    let got: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got["resultCode"], "3");
    assert_eq!(got["resultDesc"], "request body is not valid UTF-8");
    assert_eq!(app.message_count().await, 0);
}

#[tokio::test]
async fn limits_are_inclusive_and_text_is_stored_trimmed_and_verbatim() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let text = format!("  {}  ", "é".repeat(1999) + "😀");
    let (status, got) = reply(
        app.leave_message(&token, &json!({"phoneNo": " 911 ", "leaveMessage": text}))
            .await,
    )
    .await;
    assert_eq!((status, got["resultCode"].as_str()), (200, Some("0")));
    let hostile = "<script>alert(1)</script>\r\n\t'; DROP TABLE leave_message; --";
    let (status, _) = reply(
        app.leave_message(
            &token,
            &json!({"phoneNo": "+44 (20) 7946-0958", "leaveMessage": hostile}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);

    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT phone_no, phone_digits, message FROM leave_message ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows[0].0, "911");
    assert_eq!(rows[0].2.chars().count(), 2000);
    assert_eq!(
        rows[1],
        (
            "+44 (20) 7946-0958".into(),
            "442079460958".into(),
            hostile.into()
        )
    );
}

#[tokio::test]
async fn bodies_over_64_kib_get_413_and_store_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let padded = format!(
        r#"{{"phoneNo":"123456","leaveMessage":"hi","pad":"{}"}}"#,
        "a".repeat(64 * 1024)
    );
    let (status, got) = reply(
        app.client
            .post(app.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={token}"))
            .header("content-type", "application/json")
            .body(padded.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(got["returnCode"], "3");

    // Chunked, with no Content-Length to refuse early on.
    let mut request = format!(
        "POST {BASE}/doLeaveMessage HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: application/json\r\ncookie: ccmessaging-token={token}\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    for chunk in padded.as_bytes().chunks(8192) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    request.push_str("0\r\n\r\n");
    let (status, text) = app.raw_request(request.as_bytes()).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(app.message_count().await, 0);

    // Exactly at the limit is still read (and here refused only for its content).
    let shape = |pad: &str| format!(r#"{{"phoneNo":"123456","leaveMessage":"hi","pad":"{pad}"}}"#);
    let at_limit = shape(&"a".repeat(64 * 1024 - shape("").len()));
    assert_eq!(at_limit.len(), 64 * 1024);
    let (status, got) = reply(
        app.client
            .post(app.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={token}"))
            .header("content-type", "application/json")
            .body(at_limit)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, got["resultCode"].as_str()), (200, Some("0")));
}

#[tokio::test]
async fn no_valid_token_means_401_whatever_the_body() {
    let app = spawn_app().await;
    let (channel, token) = app.channel_and_token().await;
    let big = "a".repeat(200_000);
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases: Vec<(Option<String>, &str, String)> = vec![
        (
            None,
            "application/json",
            json!({"phoneNo": "123456", "leaveMessage": "hi"}).to_string(),
        ),
        (None, "text/plain", big.clone()),
        (Some("********".into()), "application/json", "{".into()),
        (
            Some(tampered),
            "application/json",
            json!({"phoneNo": "123456", "leaveMessage": "hi"}).to_string(),
        ),
        (Some(format!("{token}x")), "application/xml", big),
    ];
    for (cookie_token, content_type, body) in cases {
        let mut req = app
            .client
            .post(app.facade("doLeaveMessage"))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = &cookie_token {
            req = req.header("cookie", format!("ccmessaging-token={t}"));
        }
        let (status, got) = reply(req.send().await.unwrap()).await;
        assert_eq!(status, 401, "{cookie_token:?} {content_type}");
        assert_eq!(got["returnCode"], "401");
        assert_eq!(got["resultCode"], "401");
    }

    // Expired: a genuine signature whose lifetime has passed.
    let key = app.store.signing_key().await.unwrap();
    let expired = key.issue(
        leavemsg::domain::ChannelId::parse(&channel).unwrap(),
        leavemsg::domain::UserId::parse("visitor-1").unwrap(),
        Utc::now() - chrono::Duration::hours(2),
        chrono::Duration::hours(1),
    );
    let (status, got) = reply(
        app.leave_message(
            &expired.token,
            &json!({"phoneNo": "123456", "leaveMessage": "hi"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(got["resultDesc"], "the ccmessaging-token has expired");

    // Genuine and unexpired, but never issued through applyToken (not the current token).
    let unissued = key.issue(
        leavemsg::domain::ChannelId::parse(&channel).unwrap(),
        leavemsg::domain::UserId::parse("visitor-1").unwrap(),
        Utc::now(),
        chrono::Duration::hours(1),
    );
    let (status, _) = reply(
        app.leave_message(
            &unissued.token,
            &json!({"phoneNo": "123456", "leaveMessage": "hi"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(app.message_count().await, 0);
}

/// An instance remembers tokens it has seen valid; a token replaced through another instance,
/// or whose channel was disabled behind its back, must still get 401 first, whatever the body.
#[tokio::test]
async fn a_token_revoked_elsewhere_gets_401_whatever_the_body() {
    let a = spawn_app_on(spawn_app().await.database_url.clone(), |s| {
        s.rate_per_token = 1;
    })
    .await;
    let b = spawn_app_on(a.database_url.clone(), |_| {}).await;
    let channel = a.create_channel().await;
    let first = a.token_for(&channel, "visitor-1").await;
    let other = a.token_for(&channel, "visitor-2").await;
    let msg = json!({"phoneNo": "123456", "leaveMessage": "hi"});
    // Both now remembered by A as valid; the first has used up its one call a minute.
    assert_eq!(reply(a.leave_message(&first, &msg).await).await.0, 200);

    // Replaced through B: A hears nothing of it.
    let _newer = b.token_for(&channel, "visitor-1").await;
    let send = |token: &str, content_type: &str, body: String| {
        a.client
            .post(a.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={token}"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases = [
        ("application/json", "{".to_owned()),
        ("text/plain", "hi".to_owned()),
        ("application/json", "a".repeat(100_000)),
        // Over the token's rate limit as well as replaced.
        ("application/json", msg.to_string()),
    ];
    for (content_type, body) in cases {
        let (status, got) = reply(send(&first, content_type, body).await.unwrap()).await;
        assert_eq!(
            (status, got["resultCode"].as_str()),
            (401, Some("401")),
            "{content_type}: {got}"
        );
    }

    // The channel disabled in the database directly: A again hears nothing.
    let id = leavemsg::domain::ChannelId::parse(&channel).unwrap();
    a.store.disable_channel(id).await.unwrap();
    for body in ["{".to_owned(), msg.to_string()] {
        let (status, _) = reply(send(&other, "application/json", body).await.unwrap()).await;
        assert_eq!(status, 401);
    }
    assert_eq!(a.message_count().await, 1);
}

#[tokio::test]
async fn disabling_the_channel_revokes_its_tokens_at_once() {
    let app = spawn_app().await;
    let (channel, token) = app.channel_and_token().await;
    let msg = json!({"phoneNo": "123456", "leaveMessage": "before"});
    assert_eq!(reply(app.leave_message(&token, &msg).await).await.0, 200);
    let id = leavemsg::domain::ChannelId::parse(&channel).unwrap();
    app.store.disable_channel(id).await.unwrap();
    let (status, got) = reply(
        app.leave_message(
            &token,
            &json!({"phoneNo": "123456", "leaveMessage": "after"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, got["resultCode"].as_str()), (401, Some("401")));
    assert_eq!(app.message_count().await, 1);
}

#[tokio::test]
async fn a_resubmission_with_the_same_token_stores_one_row() {
    let app = spawn_app().await;
    let (channel, token) = app.channel_and_token().await;
    let msg = json!({"phoneNo": "123456", "leaveMessage": "double click"});
    for _ in 0..2 {
        let resp = app.leave_message(&token, &msg).await;
        assert_eq!(resp.text().await.unwrap(), SUCCESS);
    }
    // Trimming makes these the same submission too.
    let padded = json!({"phoneNo": " 123456 ", "leaveMessage": "double click\n"});
    assert_eq!(
        app.leave_message(&token, &padded)
            .await
            .text()
            .await
            .unwrap(),
        SUCCESS
    );
    assert_eq!(app.message_count().await, 1);

    // Many at once, as a retrying client might: all succeed, one row.
    let burst = json!({"phoneNo": "123456", "leaveMessage": "retry storm"});
    let calls = (0..16).map(|_| app.leave_message(&token, &burst));
    for resp in futures_util::future::join_all(calls).await {
        assert_eq!(resp.text().await.unwrap(), SUCCESS);
    }
    assert_eq!(app.message_count().await, 2);

    // The same content with another visitor's token is another message.
    let other = app.token_for(&channel, "visitor-2").await;
    assert_eq!(
        app.leave_message(&other, &msg).await.text().await.unwrap(),
        SUCCESS
    );
    assert_eq!(app.message_count().await, 3);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_store_nothing() {
    let app = spawn_app_with(|s| s.rate_per_token = 2).await;
    let (_, token) = app.channel_and_token().await;
    for i in 0..2 {
        let (status, _) = reply(
            app.leave_message(
                &token,
                &json!({"phoneNo": "123456", "leaveMessage": format!("m{i}")}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200);
    }
    let resp = app
        .leave_message(&token, &json!({"phoneNo": "123456", "leaveMessage": "m3"}))
        .await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got["returnCode"], "429");
    assert_eq!(got["resultCode"], "429");
    assert_eq!(app.message_count().await, 2);

    // Per client IP, resolved through the trusted proxy: each forwarded client has its own.
    let app = spawn_app_with(|s| {
        s.rate_per_ip = 3;
        s.trusted_proxies = leavemsg::domain::TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    let channel = app.create_channel().await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let resp = app
            .client
            .post(app.facade("applyToken"))
            .header("x-forwarded-for", "203.0.113.10")
            .json(&json!({"userId": format!("u{i}"), "userName": "n", "channelId": channel}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let resp = app
        .client
        .post(app.facade("applyToken"))
        .header("x-forwarded-for", "203.0.113.11")
        .json(&json!({"userId": "u9", "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "another client IP has its own allowance"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_an_unreadable_hop_cannot_dodge_the_per_ip_limit() {
    // The proxy writes "unknown" when it cannot name the client; the client writes its own
    // X-Real-IP, a new one each call. Every call then counts as the proxy's (the peer's).
    let app = spawn_app_with(|s| {
        s.rate_per_ip = 3;
        s.trusted_proxies = leavemsg::domain::TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    let channel = app.create_channel().await;
    let token = app.token_for(&channel, "visitor-1").await; // the peer's first call
    let resp = app
        .client
        .post(app.facade("doLeaveMessage"))
        .header("cookie", format!("ccmessaging-token={token}"))
        .header("x-forwarded-for", "unknown")
        .header("x-real-ip", "198.51.100.1")
        .json(&json!({"phoneNo": "123456", "leaveMessage": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply(resp).await.0, 200);
    let ip: String = sqlx::query_scalar("SELECT host(client_ip) FROM leave_message")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        ip, "127.0.0.1",
        "the client's own X-Real-IP is not believed"
    );
    let mut statuses = Vec::new();
    for i in 2..4 {
        let resp = app
            .client
            .post(app.facade("applyToken"))
            .header("x-forwarded-for", "unknown")
            .header("x-real-ip", format!("198.51.100.{i}"))
            .json(&json!({"userId": format!("u{i}"), "userName": "n", "channelId": channel}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 429]);
}

#[tokio::test]
async fn invisible_or_direction_spoofing_text_is_refused_with_code_3() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let cases = [
        ("\u{200b}", "leaveMessage must not be blank"),
        (
            " \u{feff}\u{200d}\u{2060} ",
            "leaveMessage must not be blank",
        ),
        (
            "\u{202e}",
            "leaveMessage must not contain bidirectional override or isolate characters",
        ),
        (
            "call me at \u{202e}4321",
            "leaveMessage must not contain bidirectional override or isolate characters",
        ),
    ];
    for (text, desc) in cases {
        let resp = app
            .leave_message(&token, &json!({"phoneNo": "123456", "leaveMessage": text}))
            .await;
        let (status, got) = reply(resp).await;
        assert_eq!(status, 200, "{text:?}");
        assert_eq!(
            got,
            json!({
                "returnCode": "3", "resultCode": "3",
                "description": "the leaveMessageParams is error.", "resultDesc": desc
            }),
            "{text:?}"
        );
    }
    assert_eq!(app.message_count().await, 0);
}

#[tokio::test]
async fn a_slow_database_gets_503_code_13_within_5_seconds() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    // Another session holds the table: the insert waits until the statement timeout.
    let blocker = app.lock_message_table().await;
    let started = std::time::Instant::now();
    let resp = app
        .leave_message(
            &token,
            &json!({"phoneNo": "123456", "leaveMessage": "slow"}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"returnCode":"13","resultCode":"13","description":"Save leaveMessage failed!","resultDesc":"Save leaveMessage failed!"}"#
    );
    // The service's own deadline (under the contract's 5 s) ends the wait; the lock would
    // otherwise hold the request until the test releases it. The bound here is generous so a
    // busy machine cannot break it; the deadline itself is checked where it is defined.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(leavemsg::store::DEADLINE < Duration::from_secs(5));
    blocker.rollback().await.unwrap();
    assert_eq!(app.message_count().await, 0);
    let (status, _) = reply(
        app.leave_message(
            &token,
            &json!({"phoneNo": "123456", "leaveMessage": "slow"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        status, 200,
        "the same message succeeds once the database answers"
    );
}

/// A replaced token in a cookie does not hide the visitor's current token in the header (or
/// the other way round): the first current one is used.
#[tokio::test]
async fn a_replaced_token_does_not_shadow_a_current_one() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let replaced = app.token_for(&channel, "visitor-1").await;
    let current = app.token_for(&channel, "visitor-1").await;
    for (i, (cookie, header)) in [(&replaced, &current), (&current, &replaced)]
        .into_iter()
        .enumerate()
    {
        let resp = app
            .client
            .post(app.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={cookie}"))
            .header("ccmessaging-token", header.as_str())
            .json(&json!({"phoneNo": "123456", "leaveMessage": format!("call me {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), SUCCESS, "case {i}");
    }
    assert_eq!(app.message_count().await, 2);

    // Only replaced tokens: still 401.
    let resp = app
        .client
        .post(app.facade("doLeaveMessage"))
        .header("cookie", format!("ccmessaging-token={replaced}"))
        .header("ccmessaging-token", replaced.as_str())
        .json(&json!({"phoneNo": "123456", "leaveMessage": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(app.message_count().await, 2);
}

/// `callback_after`, `due_at` and `received_at` of the message with this text.
async fn times_of(
    app: &TestApp,
    text: &str,
) -> (Option<DateTime<Utc>>, DateTime<Utc>, DateTime<Utc>) {
    sqlx::query_as(
        "SELECT callback_after, due_at, received_at FROM leave_message WHERE message = $1",
    )
    .bind(text)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn callback_after_decides_when_the_message_is_due() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let in_five_hours = Utc::now() + chrono::Duration::hours(5);
    // In India's time, to the microsecond (PostgreSQL's precision).
    let in_five_hours = DateTime::from_timestamp_micros(in_five_hours.timestamp_micros()).unwrap();
    let india = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let nearly_thirty_days = Utc::now() + chrono::Duration::days(30) - chrono::Duration::minutes(5);
    let cases = [
        (
            "later",
            json!(
                in_five_hours
                    .with_timezone(&india)
                    .to_rfc3339_opts(SecondsFormat::Micros, false)
            ),
        ),
        ("far", json!(nearly_thirty_days.to_rfc3339())),
        ("past", json!("2001-02-03T04:05:06Z")),
        ("null", Value::Null),
    ];
    for (text, callback_after) in &cases {
        let body =
            json!({"phoneNo": "123456", "leaveMessage": text, "callbackAfter": callback_after});
        let (status, body) = reply(app.leave_message(&token, &body).await).await;
        assert_eq!(
            (status, body["resultCode"].as_str()),
            (200, Some("0")),
            "{text}: {body}"
        );
    }

    let (after, due, received) = times_of(&app, "later").await;
    assert_eq!(after, Some(in_five_hours));
    assert_eq!(due, in_five_hours);
    assert!(received < due);
    let (after, due, _) = times_of(&app, "far").await;
    assert_eq!(Some(due), after);
    assert!(due > Utc::now() + chrono::Duration::days(29));
    // A time in the past counts as now: the message is due when received.
    let (after, due, received) = times_of(&app, "past").await;
    let after = after.expect("kept as the time it was received");
    assert!(after <= received && after > received - chrono::Duration::minutes(1));
    assert_eq!(due, received);
    let (after, due, received) = times_of(&app, "null").await;
    assert_eq!((after, due), (None, received));
}

#[tokio::test]
async fn a_bad_callback_after_is_code_3_naming_it_and_stores_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let too_far =
        (Utc::now() + chrono::Duration::days(30) + chrono::Duration::minutes(5)).to_rfc3339();
    // As large as a body may be: 64 KiB in all.
    let oversized = "2".repeat(64 * 1024 - 100);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!(too_far),
            "callbackAfter must be at most 30 days ahead",
        ),
        (
            json!("9999-12-31T23:59:59Z"),
            "callbackAfter must be at most 30 days ahead",
        ),
        (
            json!("tomorrow after 5"),
            "callbackAfter must be an RFC 3339 time with an offset",
        ),
        (
            json!(""),
            "callbackAfter must be an RFC 3339 time with an offset",
        ),
        (
            json!("2026-12-01T18:00:00"),
            "callbackAfter must be an RFC 3339 time with an offset",
        ),
        (
            json!("2026-12-01"),
            "callbackAfter must be an RFC 3339 time with an offset",
        ),
        (
            json!("2026-13-01T18:00:00Z"),
            "callbackAfter must be an RFC 3339 time with an offset",
        ),
        (
            json!("2026-12-01T18:00:00Z\u{0}"),
            "callbackAfter must be an RFC 3339 time with an offset",
        ),
        (
            json!(oversized),
            "callbackAfter must be an RFC 3339 time with an offset",
        ),
        (json!(1_764_612_000), "callbackAfter must be a string"),
        (json!(false), "callbackAfter must be a string"),
        (
            json!({"at": "2026-12-01T18:00:00Z"}),
            "callbackAfter must be a string",
        ),
        (
            json!(["2026-12-01T18:00:00Z"]),
            "callbackAfter must be a string",
        ),
    ];
    for (callback_after, expected) in cases {
        let body =
            json!({"phoneNo": "123456", "leaveMessage": "hi", "callbackAfter": callback_after});
        let (status, got) = reply(app.leave_message(&token, &body).await).await;
        assert_eq!(status, 200, "{callback_after:.60}");
        assert_eq!(got["returnCode"], "3", "{callback_after:.60}");
        assert_eq!(got["resultCode"], "3");
        assert_eq!(got["description"], "the leaveMessageParams is error.");
        let desc = got["resultDesc"].as_str().unwrap();
        assert!(desc.starts_with(expected), "{callback_after:.60}: {desc}");
        // What was sent is not echoed back.
        assert!(desc.len() < 100, "{desc}");
    }
    assert_eq!(app.message_count().await, 0);
}
