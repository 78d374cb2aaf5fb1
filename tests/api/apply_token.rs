//! CONTRACT §2.1: applyToken.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

#[tokio::test]
async fn issues_a_token_with_the_vendor_body_and_cookie() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;

    let resp = app
        .apply_token_raw(
            &json!({"userId": "u-1", "userName": "Ada", "channelId": channel, "locale": "en"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .expect("Set-Cookie")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["resultCode"], "0");
    assert_eq!(body["resultDesc"], "apply token success.");
    let token = body["token"].as_str().unwrap();
    assert!(
        token.len() >= 40,
        "token too short to carry 128 bits: {token}"
    );
    assert_eq!(
        cookie,
        format!(
            "ccmessaging-token={token}; Path=/service-cloud; HttpOnly; SameSite=Lax; Max-Age=3600"
        )
    );
}

#[tokio::test]
async fn the_cookie_is_secure_when_configured_and_cross_site_per_channel() {
    let app = spawn_app_with(|s| s.cookie_secure = true).await;
    let channel = app.create_channel().await;
    let resp = app
        .apply_token_raw(&json!({"userId": "u", "userName": "n", "channelId": channel}))
        .await;
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.ends_with("; SameSite=Lax; Max-Age=3600; Secure"),
        "{cookie}"
    );

    let app = spawn_app_with(|s| s.token_ttl = chrono::Duration::seconds(120)).await;
    let channel = app
        .create_channel_with(&["https://shop.example"], true)
        .await;
    let resp = app
        .apply_token_raw(&json!({"userId": "u", "userName": "n", "channelId": channel}))
        .await;
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.ends_with("; HttpOnly; SameSite=None; Max-Age=120; Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn tokens_are_distinct_and_stored_only_as_hashes() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let first = app.token_for(&channel, "same-user").await;
    let second = app.token_for(&channel, "same-user").await;
    assert_ne!(first, second);

    let rows: Vec<(Vec<u8>, String, String)> =
        sqlx::query_as("SELECT token_hash, user_id, user_name FROM visitor_token")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "a newer token replaces the older one's row");
    assert_eq!(rows[0].0, Sha256::digest(second.as_bytes()).to_vec());
    // Nowhere in the database is the token itself.
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM visitor_token t")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!dump.contains(&second) && !dump.contains(&first));
}

#[tokio::test]
async fn a_newer_token_replaces_the_older_one() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let old = app.token_for(&channel, "visitor").await;
    let new = app.token_for(&channel, "visitor").await;
    let other_user = app.token_for(&channel, "someone-else").await;
    let msg = json!({"phoneNo": "123456", "leaveMessage": "hello"});

    let (status, body) = reply(app.leave_message(&old, &msg).await).await;
    assert_eq!((status, body["resultCode"].as_str()), (401, Some("401")));
    let (status, _) = reply(app.leave_message(&new, &msg).await).await;
    assert_eq!(status, 200);
    let (status, _) = reply(app.leave_message(&other_user, &msg).await).await;
    assert_eq!(status, 200, "another visitor's token is not replaced");
}

#[tokio::test]
async fn unknown_and_disabled_channels_are_refused_with_code_3() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let resp = app
        .apply_token_raw(&json!({"userId": "u", "userName": "n", "channelId": unknown}))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("set-cookie").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"resultCode": "3", "resultDesc": "channelId does not name a web channel"})
    );

    let channel = app.create_channel().await;
    let id = leavemsg::domain::ChannelId::parse(&channel).unwrap();
    assert!(app.store.disable_channel(id).await.unwrap());
    let body: Value = app
        .apply_token_raw(&json!({"userId": "u", "userName": "n", "channelId": channel}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"resultCode": "3", "resultDesc": "channelId names a disabled channel"})
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM visitor_token")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn bad_fields_are_refused_with_a_specific_description() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let cases = [
        (
            json!({"userName": "n", "channelId": channel}),
            "userId is missing",
        ),
        (
            json!({"userId": null, "userName": "n", "channelId": channel}),
            "userId must not be null",
        ),
        (
            json!({"userId": 42, "userName": "n", "channelId": channel}),
            "userId must be a string",
        ),
        (
            json!({"userId": "", "userName": "n", "channelId": channel}),
            "userId must not be blank",
        ),
        (
            json!({"userId": "u".repeat(33), "userName": "n", "channelId": channel}),
            "userId must be at most 32 characters long",
        ),
        (
            json!({"userId": "u", "channelId": channel}),
            "userName is missing",
        ),
        (
            json!({"userId": "u", "userName": "a\u{0}b", "channelId": channel}),
            "userName must not contain control characters",
        ),
        (
            json!({"userId": "u", "userName": "n"}),
            "channelId is missing",
        ),
        (
            json!({"userId": "u", "userName": "n", "channelId": "12345"}),
            "channelId is not a Configuration ID",
        ),
        (
            json!(["u", "n", channel]),
            "request body must be a JSON object",
        ),
    ];
    for (body, desc) in cases {
        let resp = app.apply_token_raw(&body).await;
        assert_eq!(resp.status(), 200, "{body}");
        let got: Value = resp.json().await.unwrap();
        assert_eq!(
            got,
            json!({"resultCode": "3", "resultDesc": desc}),
            "{body}"
        );
    }
}

#[tokio::test]
async fn invisible_or_direction_spoofing_user_fields_are_refused_with_code_3() {
    let app = spawn_app().await;
    let channel = app.create_channel().await;
    let cases = [
        (
            json!({"userId": "u", "userName": "Ada \u{202e}ecalevoL", "channelId": channel}),
            "userName must not contain bidirectional override or isolate characters",
        ),
        (
            json!({"userId": "u\u{2066}1", "userName": "n", "channelId": channel}),
            "userId must not contain bidirectional override or isolate characters",
        ),
        (
            json!({"userId": "u", "userName": "\u{200b}", "channelId": channel}),
            "userName must not be blank",
        ),
        (
            json!({"userId": "\u{ad}\u{180e}", "userName": "n", "channelId": channel}),
            "userId must not be blank",
        ),
    ];
    for (body, desc) in cases {
        let resp = app.apply_token_raw(&body).await;
        assert_eq!(resp.status(), 200, "{body}");
        let got: Value = resp.json().await.unwrap();
        assert_eq!(
            got,
            json!({"resultCode": "3", "resultDesc": desc}),
            "{body}"
        );
    }
    let issued: i64 = sqlx::query_scalar("SELECT count(*) FROM visitor_token")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(issued, 0);
}

#[tokio::test]
async fn non_json_and_oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.facade("applyToken"))
        .header("content-type", "text/plain")
        .body("userId=u")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(resp.json::<Value>().await.unwrap()["resultCode"], "3");

    let big = format!(
        r#"{{"userId":"u","userName":"n","channelId":"x","pad":"{}"}}"#,
        "a".repeat(70_000)
    );
    let resp = app
        .client
        .post(app.facade("applyToken"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.json::<Value>().await.unwrap()["resultCode"], "3");
}

#[tokio::test]
async fn a_used_token_that_is_replaced_stops_working_before_its_body_is_read() {
    let a = spawn_app().await;
    let b = spawn_app_on(a.database_url.clone(), |_| {}).await;
    let channel = a.create_channel().await;
    let old = a.token_for(&channel, "visitor").await;
    // Used on A, so A knows it without asking the database.
    let msg = json!({"phoneNo": "123456", "leaveMessage": "first"});
    assert_eq!(reply(a.leave_message(&old, &msg).await).await.0, 200);
    // Replaced through B; A hears of it from the database.
    let _new = b.token_for(&channel, "visitor").await;
    let oversized = "x".repeat(100_000);
    let refused = wait_until(std::time::Duration::from_secs(30), || async {
        let resp = a
            .client
            .post(a.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={old}"))
            .header("content-type", "application/json")
            .body(oversized.clone())
            .send()
            .await
            .unwrap();
        resp.status() == 401
    })
    .await;
    assert!(
        refused,
        "the replaced token was still accepted before the body was read"
    );
    // And the write itself never accepts it, whatever any instance remembers.
    let (status, _) = reply(
        a.leave_message(
            &old,
            &json!({"phoneNo": "123456", "leaveMessage": "second"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(a.message_count().await, 1);
}
