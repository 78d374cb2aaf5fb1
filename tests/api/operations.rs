//! CONTRACT §5: health, readiness and metrics.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app_with(|s| s.rate_per_token = 1).await;
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    let (_, token) = app.channel_and_token().await;
    let msg = json!({"phoneNo": "123456", "leaveMessage": "counted"});
    assert_eq!(app.leave_message(&token, &msg).await.status(), 200);
    assert_eq!(app.leave_message(&token, &msg).await.status(), 429);
    let key = app.create_agent("alice", false).await;
    let _stream = EventReader::open(&app, &key).await;

    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    for needle in [
        "leavemsg_http_requests_total{route=\"/service-cloud/rest/webadapter/v1/webadapterfacade/doLeaveMessage\",method=\"POST\",status=\"200\"}",
        "leavemsg_http_request_duration_seconds_bucket{route=\"/service-cloud/rest/webadapter/v1/webadapterfacade/doLeaveMessage\",le=\"0.005\"}",
        "leavemsg_messages_stored_total",
        "leavemsg_rate_limited_total{limit=\"token\"}",
        "leavemsg_db_pool_connections{state=\"in_use\"}",
        "leavemsg_db_pool_connections{state=\"idle\"}",
        "leavemsg_stream_clients",
        "leavemsg_write_batch_rows_bucket{le=\"1\"}",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    // Paths with personal data never become labels: routes are patterns.
    assert!(!text.contains("123456"));
}

#[tokio::test]
async fn openapi_describes_both_interfaces() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let spec: serde_json::Value = resp.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/service-cloud/rest/webadapter/v1/webadapterfacade/applyToken",
        "/service-cloud/rest/webadapter/v1/webadapterfacade/doLeaveMessage",
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/messages/claim-next",
        "/api/v1/messages/{id}/claim",
        "/api/v1/messages/{id}/assign",
        "/api/v1/messages/{id}/release",
        "/api/v1/messages/{id}/process",
        "/api/v1/messages/{id}/attempts",
        "/api/v1/messages/{id}/history",
        "/api/v1/queue",
        "/api/v1/messages/stream",
        "/api/v1/messages/export.csv",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from /openapi.json"
        );
    }
    // The stream's resume header and its events are described.
    let stream = &spec["paths"]["/api/v1/messages/stream"]["get"];
    let header = stream["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Last-Event-ID")
        .unwrap_or_else(|| panic!("no Last-Event-ID parameter: {stream}"));
    assert_eq!(header["in"], "header");
    assert_eq!(header["required"], false);
    let described = stream["description"].as_str().unwrap_or_default();
    for event in ["`message`", "`lagged`", "`reset`"] {
        assert!(
            described.contains(event),
            "{event} undescribed: {described}"
        );
    }
    let message = &spec["components"]["schemas"]["Message"]["properties"];
    for field in [
        "id",
        "channelId",
        "phoneNo",
        "leaveMessage",
        "receivedAt",
        "assignedTo",
        "note",
        "callbackAfter",
        "dueAt",
        "overdueAt",
        "overdue",
        "attempts",
        "maxAttempts",
    ] {
        assert!(message.get(field).is_some(), "Message schema lacks {field}");
    }
}

#[tokio::test]
async fn methods_outside_the_known_set_are_one_metric_label() {
    let app = spawn_app().await;
    // Long random methods, as an attacker would send them (a method is any token).
    let methods: Vec<String> = (0..4)
        .map(|_| {
            let word = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
            format!("M{}", word.repeat(60))
        })
        .collect();
    for (method, path) in methods
        .iter()
        .zip(["/healthz", "/nowhere", "/console", "/metrics"])
    {
        let request = format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let (status, _) = app.raw_request(request.as_bytes()).await;
        assert_ne!(status, 0, "no answer to {path}");
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#"method="other""#), "{text}");
    for method in &methods {
        assert!(
            !text.contains(&method[..20]),
            "a request's method became a label"
        );
    }
}

#[tokio::test]
async fn head_is_answered_wherever_get_is_with_the_same_head_and_no_body() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let key = app.create_agent("alice", false).await;
    let (_, token) = app.channel_and_token().await;
    let id = app.store_message(&token, "123456", "hello").await;
    let paths = [
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/openapi.json".to_owned(),
        "/console".to_owned(),
        "/assets/style.css".to_owned(),
        format!("/web/{channel}"),
        "/api/v1/messages".to_owned(),
        format!("/api/v1/messages/{id}"),
        "/api/v1/messages/export.csv".to_owned(),
    ];
    for path in &paths {
        let get = app.client.get(app.url(path)).bearer_auth(&key).send().await;
        let get = get.unwrap();
        let head = app
            .client
            .head(app.url(path))
            .bearer_auth(&key)
            .send()
            .await;
        let head = head.unwrap();
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(get.status(), 200, "{path}");
        for name in ["content-type", "content-length", "cache-control"] {
            assert_eq!(
                head.headers().get(name),
                get.headers().get(name),
                "{path} {name}"
            );
        }
        // Over the wire: the answer to HEAD ends with its head.
        let request = format!(
            "HEAD {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n"
        );
        let (status, body) = app.raw_request(request.as_bytes()).await;
        assert_eq!((status, body.as_str()), (200, ""), "{path}");
    }
    // /metrics changes between two reads, so only its status and type are compared.
    let head = app.client.head(app.url("/metrics")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(
        head.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // The live stream answers HEAD without holding the connection open.
    let request = format!(
        "HEAD /api/v1/messages/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n"
    );
    let (status, body) = app.raw_request(request.as_bytes()).await;
    assert_eq!((status, body.as_str()), (200, ""));
}

/// The value of the series `series` (name and labels, as rendered) in a Prometheus text.
fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

async fn metrics_text(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

#[tokio::test]
async fn every_metric_is_described_and_every_counter_exported_from_start() {
    // Every counter series with a label set known in advance. The recorder is shared by the
    // tests of this process, so others may have bumped them: what is checked before any request
    // is that each series is there, and after, that this test's answers were counted.
    let registered = [
        "leavemsg_messages_stored_total",
        "leavemsg_messages_deduplicated_total",
        r#"leavemsg_rate_limited_total{limit="token"}"#,
        r#"leavemsg_rate_limited_total{limit="ip"}"#,
        r#"leavemsg_database_failures_total{operation="agent_interface"}"#,
        r#"leavemsg_database_failures_total{operation="channel_lookup"}"#,
        r#"leavemsg_database_failures_total{operation="store_token"}"#,
        r#"leavemsg_database_failures_total{operation="token_lookup"}"#,
        r#"leavemsg_database_failures_total{operation="store_message"}"#,
        r#"leavemsg_leave_message_answers_total{result_code="0"}"#,
        r#"leavemsg_leave_message_answers_total{result_code="3"}"#,
        r#"leavemsg_leave_message_answers_total{result_code="13"}"#,
        r#"leavemsg_leave_message_answers_total{result_code="401"}"#,
        r#"leavemsg_leave_message_answers_total{result_code="429"}"#,
        r#"leavemsg_apply_token_answers_total{result_code="0"}"#,
        r#"leavemsg_apply_token_answers_total{result_code="3"}"#,
        r#"leavemsg_apply_token_answers_total{result_code="13"}"#,
        r#"leavemsg_apply_token_answers_total{result_code="429"}"#,
    ];
    let app = spawn_app().await;
    let before = metrics_text(&app).await;
    for series in registered {
        assert!(
            metric_value(&before, series).is_some(),
            "/metrics lacks {series} before any request:\n{before}"
        );
        let family = series.split('{').next().unwrap();
        assert!(
            before.contains(&format!("# HELP {family} ")),
            "{family} has no # HELP:\n{before}"
        );
    }
    let build_info = format!(
        r#"leavemsg_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric_value(&before, &build_info), Some(1.0), "{before}");

    let answers = |text: &str, code: &str| {
        let series = format!(r#"leavemsg_leave_message_answers_total{{result_code="{code}"}}"#);
        metric_value(text, &series).unwrap()
    };
    let (_, token) = app.channel_and_token().await;
    let stored = json!({"phoneNo": "123456", "leaveMessage": "counted by its code"});
    let (status, body) = reply(app.leave_message(&token, &stored).await).await;
    assert_eq!((status, body["resultCode"].as_str()), (200, Some("0")));
    let bad = json!({"phoneNo": "not a phone", "leaveMessage": "x"});
    let (status, body) = reply(app.leave_message(&token, &bad).await).await;
    assert_eq!((status, body["resultCode"].as_str()), (200, Some("3")));
    let no_token = app
        .client
        .post(app.facade("doLeaveMessage"))
        .json(&stored)
        .send()
        .await
        .unwrap();
    let (status, body) = reply(no_token).await;
    assert_eq!((status, body["resultCode"].as_str()), (401, Some("401")));

    let after = metrics_text(&app).await;
    // At least one more: tests running beside this one may answer too.
    for code in ["0", "3", "401"] {
        assert!(
            answers(&after, code) >= answers(&before, code) + 1.0,
            "resultCode {code} not counted:\n{after}"
        );
    }
    let applied = r#"leavemsg_apply_token_answers_total{result_code="0"}"#;
    assert!(metric_value(&after, applied) >= metric_value(&before, applied).map(|v| v + 1.0));
    // Every family now present, gauges and histograms included, is described.
    for family in [
        "leavemsg_http_requests_total",
        "leavemsg_http_request_duration_seconds",
        "leavemsg_write_batch_rows",
        "leavemsg_db_pool_connections",
        "leavemsg_stream_clients",
        "leavemsg_stream_listening",
        "leavemsg_build_info",
    ] {
        assert!(
            after.contains(&format!("# HELP {family} ")),
            "{family} has no # HELP:\n{after}"
        );
    }
}
