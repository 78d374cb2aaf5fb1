//! One try of one webhook delivery: the Standard Webhooks request (CONTRACT §7.1).

use std::time::Duration;

use serde_json::json;

use crate::credentials::WebhookSecret;
use crate::store::webhooks::Delivery;
use crate::wire::Message;

/// The HTTP client every endpoint worker shares: rustls, the system's roots, `timeout` per try,
/// no redirects (a receiver that moved answers 3xx, which is retried until it is fixed).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("leavemsg/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot build the webhook client; using the defaults");
            reqwest::Client::new()
        })
}

/// `webhook-id`: `evt_` and the event's uid in hex, the same on every try.
pub fn webhook_id(delivery: &Delivery) -> String {
    format!("evt_{}", delivery.uid.simple())
}

/// The JSON body: `{"type", "timestamp", "data"}`; `data` is the message after the change
/// (with `attempt` for message.attempted), or only its ids once it was erased or purged.
pub fn body(delivery: &Delivery) -> Vec<u8> {
    let data = match &delivery.message {
        Some(row) => {
            let mut data = serde_json::to_value(Message::from(row.clone())).unwrap_or_default();
            if let (Some(attempt), Some(object)) = (&delivery.attempt, data.as_object_mut()) {
                object.insert("attempt".to_owned(), attempt.clone());
            }
            data
        }
        // Erased or purged: nothing of the message is left but its ids.
        None => json!({"id": delivery.message_id, "channelId": delivery.channel_id}),
    };
    let body = json!({
        "type": delivery.event_type,
        "timestamp": delivery.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Sends one try; `Err` says why it did not count as delivered (never the secret).
pub async fn send(client: &reqwest::Client, delivery: &Delivery) -> Result<(), String> {
    let Some(secret) = WebhookSecret::parse(&delivery.secret) else {
        return Err("the endpoint's secret does not parse".to_owned());
    };
    let id = webhook_id(delivery);
    let body = body(delivery);
    let timestamp = chrono::Utc::now().timestamp();
    let signature = secret.sign(&id, timestamp, &body);
    let response = client
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // Without the URL: it may hold credentials, and this text is logged and listed.
            let e = e.without_url();
            if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                format!("request failed: {e}")
            }
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", status.as_u16()))
    }
}
