//! CONTRACT §2.1a: browsers on other sites.

use serde_json::{Value, json};

use crate::helpers::*;

const SHOP: &str = "https://shop.example";

#[tokio::test]
async fn a_listed_origin_may_call_with_credentials_and_others_are_refused() {
    let app = spawn_app().await;
    let channel = app.create_channel_with(&[SHOP], false).await;
    let body = json!({"userId": "u", "userName": "n", "channelId": channel});

    let resp = app
        .client
        .post(app.facade("applyToken"))
        .header("origin", SHOP)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], SHOP);
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let resp = app
        .client
        .post(app.facade("applyToken"))
        .header("origin", "https://evil.example")
        .json(&json!({"userId": "u2", "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    assert!(resp.headers().get("set-cookie").is_none());
    assert_eq!(resp.json::<Value>().await.unwrap()["resultCode"], "3");

    let msg = json!({"phoneNo": "123456", "leaveMessage": "from the shop"});
    let send = |origin: &'static str| {
        app.client
            .post(app.facade("doLeaveMessage"))
            .header("origin", origin)
            .header("cookie", format!("ccmessaging-token={token}"))
            .json(&msg)
            .send()
    };
    let resp = send(SHOP).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], SHOP);
    let resp = send("https://evil.example").await.unwrap();
    assert_eq!(resp.status(), 403);
    let got: Value = resp.json().await.unwrap();
    assert_eq!(
        (got["returnCode"].as_str(), got["resultCode"].as_str()),
        (Some("3"), Some("3"))
    );
    assert_eq!(app.message_count().await, 1);
}

#[tokio::test]
async fn a_channel_without_origins_takes_no_header_and_its_own_pages_only() {
    let app = spawn_app().await;
    let (_, token) = app.channel_and_token().await;
    let send = |origin: Option<String>, text: &'static str| {
        let mut req = app
            .client
            .post(app.facade("doLeaveMessage"))
            .header("cookie", format!("ccmessaging-token={token}"))
            .json(&json!({"phoneNo": "123456", "leaveMessage": text}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(send(None, "no origin").await.unwrap().status(), 200);
    let own = format!("http://127.0.0.1:{}", app.port);
    assert_eq!(send(Some(own), "own page").await.unwrap().status(), 200);
    assert_eq!(
        send(Some(SHOP.into()), "foreign").await.unwrap().status(),
        403
    );
    assert_eq!(
        send(Some("null".into()), "sandboxed")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(app.message_count().await, 2);
}

/// Behind a reverse proxy that rewrites `Host` (nginx's default sends the upstream's address),
/// the form's own calls come from the public origin: with `LEAVEMSG_PUBLIC_URL` set, that
/// origin is the service's own; other origins are still refused.
#[tokio::test]
async fn the_public_urls_origin_is_the_services_own_whatever_the_host() {
    let public = "https://messages.example.com";
    let app = spawn_app_with(|s| {
        s.public_url = leavemsg::domain::PublicUrl::parse(&format!("{public}/")).unwrap();
    })
    .await;
    let channel = app.create_channel_with(&[], false).await;
    let apply = |origin: &'static str| {
        app.client
            .post(app.facade("applyToken"))
            .header("host", "127.0.0.1:8080")
            .header("origin", origin)
            .json(&json!({"userId": "v1", "userName": "V", "channelId": channel}))
            .send()
    };
    let allowed = apply(public).await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://messages.example.com"
    );
    let token = allowed.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app
        .client
        .post(app.facade("doLeaveMessage"))
        .header("host", "127.0.0.1:8080")
        .header("origin", "https://MESSAGES.example.com:443")
        .header("cookie", format!("ccmessaging-token={token}"))
        .json(&json!({"phoneNo": "123456", "leaveMessage": "through the proxy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    assert_eq!(app.message_count().await, 1);
    // Not any origin: a look-alike and plain http are not the public one.
    for foreign in [
        "https://messages.example.com.evil.test",
        "http://messages.example.com",
    ] {
        assert_eq!(apply(foreign).await.unwrap().status(), 403, "{foreign}");
    }
    // Without the setting, the same proxied call is refused: what the setting is for.
    let plain = spawn_app().await;
    let channel = plain.create_channel_with(&[], false).await;
    let refused = plain
        .client
        .post(plain.facade("applyToken"))
        .header("host", "127.0.0.1:8080")
        .header("origin", public)
        .json(&json!({"userId": "v1", "userName": "V", "channelId": channel}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn preflights_are_answered_for_listed_origins_only() {
    let app = spawn_app().await;
    app.create_channel_with(&[SHOP], true).await;
    for call in ["applyToken", "doLeaveMessage"] {
        let resp = app
            .client
            .request(reqwest::Method::OPTIONS, app.facade(call))
            .header("origin", SHOP)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{call}");
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], SHOP);
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        assert!(
            h["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("content-type")
        );

        let resp = app
            .client
            .request(reqwest::Method::OPTIONS, app.facade(call))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        assert!(resp.headers().get("access-control-allow-origin").is_none());
    }
}

/// A page on an allowed origin can read every refusal (an expired or missing token, a rate
/// limit), so a widget can apply for a new token or say "try later"; other origins still
/// cannot.
#[tokio::test]
async fn refusals_to_an_allowed_origin_carry_the_cors_headers() {
    let app = spawn_app_with(|s| {
        s.rate_per_token = 1;
        s.rate_per_ip = 3;
    })
    .await;
    let channel = app.create_channel_with(&[SHOP], false).await;
    let resp = app
        .client
        .post(app.facade("applyToken"))
        .header("origin", SHOP)
        .json(&json!({"userId": "u", "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let leave = |origin: &'static str, token: Option<&str>, text: &'static str| {
        let mut req = app
            .client
            .post(app.facade("doLeaveMessage"))
            .header("origin", origin)
            .json(&json!({"phoneNo": "123456", "leaveMessage": text}));
        if let Some(token) = token {
            req = req.header("cookie", format!("ccmessaging-token={token}"));
        }
        req.send()
    };
    let allowed = |resp: &reqwest::Response| {
        resp.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    // No token: 401, readable by the shop's page only.
    let resp = leave(SHOP, None, "no token").await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(allowed(&resp).as_deref(), Some(SHOP));
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    let resp = leave("https://evil.example", None, "no token")
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(allowed(&resp), None);

    // Over the per-token limit: 429, readable.
    let resp = leave(SHOP, Some(&token), "first").await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = leave(SHOP, Some(&token), "second").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(allowed(&resp).as_deref(), Some(SHOP));

    // Over the per-IP limit (calls with a genuine token count; this is the fourth): 429,
    // refused before the token's holder is looked up, readable; applyToken's too.
    let resp = leave(SHOP, Some(&token), "third").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(allowed(&resp).as_deref(), Some(SHOP));
    let resp = app
        .client
        .post(app.facade("applyToken"))
        .header("origin", SHOP)
        .json(&json!({"userId": "u", "userName": "n", "channelId": channel}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(allowed(&resp).as_deref(), Some(SHOP));
    assert_eq!(app.message_count().await, 1);
}
