//! `POST …/applyToken`: issue a ccmessaging-token for a visitor on a channel.
//!
//! Order of checks: per-IP limit → content type → size → fields → channel → origin; then the
//! token is issued, stored as its visitor's current one, and remembered by this instance.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;

use super::cors::Cors;
use super::vendor_reply::{self, ApplyTokenResponse, Issued, Refusal};
use super::{TOKEN_NAME, VisitorState, request};
use crate::counters::{self, DbOperation};
use crate::domain::{ChannelId, UserId, UserName};
use crate::store::channels::Channel;
use crate::store::tokens::TokenHolder;

#[derive(Deserialize)]
struct RawApplyToken {
    #[serde(default, deserialize_with = "request::present", rename = "userId")]
    user_id: Option<Value>,
    #[serde(default, deserialize_with = "request::present", rename = "userName")]
    user_name: Option<Value>,
    #[serde(default, deserialize_with = "request::present", rename = "channelId")]
    channel_id: Option<Value>,
    /// Accepted for compatibility; the interface answers in English.
    #[allow(dead_code)]
    locale: Option<Value>,
}

struct ApplyTokenParams {
    user_id: UserId,
    user_name: UserName,
    channel_id: ChannelId,
}

/// The request body, as documented.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ApplyTokenRequest {
    /// The visitor's id, 1-32 characters, kept in the browser; something visible, no control
    /// or bidirectional override characters.
    #[schema(rename = "userId", min_length = 1, max_length = 32)]
    user_id: String,
    /// The visitor's name, 1-64 characters; something visible, no control or bidirectional
    /// override characters.
    #[schema(rename = "userName", min_length = 1, max_length = 64)]
    user_name: String,
    /// The web channel's Configuration ID.
    #[schema(rename = "channelId", format = Uuid)]
    channel_id: String,
    /// Accepted and ignored.
    locale: Option<String>,
}

/// Issue a ccmessaging-token for a visitor on a channel (also set as a cookie).
#[utoipa::path(
    post,
    path = "/service-cloud/rest/webadapter/v1/webadapterfacade/applyToken",
    tag = "visitor",
    request_body(content = ApplyTokenRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Issued (code \"0\", Set-Cookie), or refused (code \"3\")", body = ApplyTokenResponse),
        (status = 403, description = "Browser origin not allowed for the channel", body = ApplyTokenResponse),
        (status = 408, description = "Body not sent in time", body = ApplyTokenResponse),
        (status = 413, description = "Body over 64 KiB", body = ApplyTokenResponse),
        (status = 415, description = "Not application/json", body = ApplyTokenResponse),
        (status = 429, description = "Rate limit exceeded", body = ApplyTokenResponse),
        (status = 503, description = "Database unavailable", body = ApplyTokenResponse),
    )
)]
pub async fn apply_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<VisitorState>,
) -> HttpResponse {
    let (outcome, cors) = accept(&req, payload, &state).await;
    vendor_reply::apply_token(outcome, cors)
}

/// The request, checked, and the token it earns; with the CORS allowance the answer carries.
async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &VisitorState,
) -> (Result<Issued, Refusal>, Cors) {
    let checked = async {
        state.limit_ip(request::client_ip(req, &state.trusted_proxies))?;
        let body = request::read_body(req, payload).await?;
        let params = parse_body(&body).map_err(Refusal::BadParams)?;
        let channel = enabled_channel(state, params.channel_id).await?;
        let cors = Cors::for_channel(req, &channel.origins, state.own_origin.as_ref())?;
        Ok((params, channel, cors))
    };
    match checked.await {
        Ok((params, channel, cors)) => (issue(state, params, &channel).await, cors),
        Err(Refusal::ForbiddenOrigin) => (Err(Refusal::ForbiddenOrigin), Cors::default()),
        Err(refusal) => {
            let cors = Cors::for_refusal(req, state, &refusal).await;
            (Err(refusal), cors)
        }
    }
}

async fn enabled_channel(state: &VisitorState, id: ChannelId) -> Result<Channel, Refusal> {
    match state.store.channel(id).await {
        Ok(Some(channel)) if channel.enabled => {
            state.known_origins.add(&channel.origins);
            Ok(channel)
        }
        Ok(Some(_)) => Err(Refusal::BadParams(
            "channelId names a disabled channel".to_owned(),
        )),
        Ok(None) => Err(Refusal::BadParams(
            "channelId does not name a web channel".to_owned(),
        )),
        Err(e) => {
            tracing::error!(error = ?e, "channel lookup failed");
            counters::database_failure(DbOperation::ChannelLookup);
            Err(Refusal::Unavailable)
        }
    }
}

/// Issues a token, makes it its visitor's current one, and remembers it.
async fn issue(
    state: &VisitorState,
    params: ApplyTokenParams,
    channel: &Channel,
) -> Result<Issued, Refusal> {
    let issued = state
        .signing_key
        .issue(channel.id, params.user_id, Utc::now(), state.token_ttl);
    let saved = state
        .store
        .replace_token(&issued.claims, &params.user_name, &issued.hash)
        .await;
    if let Err(e) = saved {
        tracing::error!(error = ?e, "storing a token failed");
        counters::database_failure(DbOperation::StoreToken);
        return Err(Refusal::Unavailable);
    }
    // Said by the request's one log line (see `telemetry`).
    tracing::Span::current().record("channel", tracing::field::display(channel.id));
    let holder = TokenHolder {
        channel_id: channel.id,
        user_name: params.user_name.as_str().to_owned(),
        origins: channel.origins.clone(),
    };
    state
        .tokens
        .insert(issued.hash.0, holder, issued.claims.expires_at);

    let secure = state.cookie_secure || channel.cross_site;
    let same_site = if channel.cross_site { "None" } else { "Lax" };
    let set_cookie = format!(
        "{TOKEN_NAME}={}; Path=/service-cloud; HttpOnly; SameSite={same_site}; Max-Age={}{}",
        issued.token,
        state.token_ttl.num_seconds(),
        if secure { "; Secure" } else { "" },
    );
    Ok(Issued {
        token: issued.token,
        set_cookie,
    })
}

fn parse_body(body: &[u8]) -> Result<ApplyTokenParams, String> {
    let raw: RawApplyToken = request::parse_object(body)?;
    fn field<'a>(name: &str, value: Option<&'a Value>) -> Result<&'a str, String> {
        request::string_field(name, value).map_err(|e| e.to_string())
    }
    Ok(ApplyTokenParams {
        user_id: UserId::parse(field("userId", raw.user_id.as_ref())?)
            .map_err(|e| e.to_string())?,
        user_name: UserName::parse(field("userName", raw.user_name.as_ref())?)
            .map_err(|e| e.to_string())?,
        channel_id: ChannelId::parse(field("channelId", raw.channel_id.as_ref())?)
            .map_err(|e| e.to_string())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked_in_order_and_named() {
        let id = ChannelId::new_random();
        let ok = format!(r#"{{"userId":"u1","userName":"Ada","channelId":"{id}","locale":"en"}}"#);
        assert!(parse_body(ok.as_bytes()).is_ok());
        for (body, expected) in [
            (
                r#"{"userName":"Ada","channelId":"x"}"#.to_owned(),
                "userId is missing",
            ),
            (
                format!(
                    r#"{{"userId":"{}","userName":"Ada","channelId":"{id}"}}"#,
                    "u".repeat(33)
                ),
                "userId must be at most 32 characters long",
            ),
            (
                format!(r#"{{"userId":"u1","userName":7,"channelId":"{id}"}}"#),
                "userName must be a string",
            ),
            (
                r#"{"userId":"u1","userName":"Ada","channelId":"nope"}"#.to_owned(),
                "channelId is not a Configuration ID",
            ),
        ] {
            assert_eq!(parse_body(body.as_bytes()).err().as_deref(), Some(expected));
        }
    }
}
