//! `POST …/doLeaveMessage`: store a visitor's message, answering only after it is committed.
//!
//! Order of checks: token (signature and expiry, no database) → per-IP limit → token still
//! current and channel enabled → per-token limit → origin → content type → size → fields →
//! store. Nothing about the body is read until the token has been accepted.
//!
//! "Still current" is first answered from this instance's memory of tokens it has seen valid
//! (no database round trip). The store re-checks the token in the same statement that writes
//! the message; and before any other refusal (429, 403, 408, 413, 415, bad parameters) is sent
//! for a token known only from memory, the database is asked, so a replaced or revoked token
//! always gets its 401 first, as the contract requires.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::TOKEN_NAME;
use super::VisitorState;
use super::request::{self, BodyError};
use super::vendor_reply::{LeaveMessageReply, LeaveMessageResponse};
use crate::counters;
use crate::credentials::{TokenError, VerifiedToken};
use crate::domain::{FieldError, MessageText, PhoneNo};
use crate::store::StoreError;
use crate::store::messages::{NewMessage, Outcome, Stored};
use crate::store::tokens::TokenHolder;
use crate::store::writer::Writer;

/// The fields of the request; anything else in the object is ignored.
#[derive(Deserialize)]
struct RawLeaveMessage {
    #[serde(default, deserialize_with = "request::present", rename = "phoneNo")]
    phone_no: Option<Value>,
    #[serde(
        default,
        deserialize_with = "request::present",
        rename = "leaveMessage"
    )]
    leave_message: Option<Value>,
}

/// The request body, as documented; parsing (in [`parse_body`]) reports each problem by name.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LeaveMessageRequest {
    /// Contact number: digits, an optional leading +, spaces and - . ( ); 3-32 characters with
    /// at least 3 digits.
    #[schema(
        rename = "phoneNo",
        min_length = 3,
        max_length = 32,
        pattern = r"^\s*\+?[0-9 .()\-]+\s*$",
        example = "123456"
    )]
    phone_no: String,
    /// Message text: 1-2000 characters after trimming; no control characters except tab, CR, LF.
    #[schema(
        rename = "leaveMessage",
        min_length = 1,
        max_length = 2000,
        example = "12122331"
    )]
    leave_message: String,
}

/// Leave a message (the vendor's doLeaveMessage). Answered only after the message is committed.
#[utoipa::path(
    post,
    path = "/service-cloud/rest/webadapter/v1/webadapterfacade/doLeaveMessage",
    tag = "visitor",
    request_body(content = LeaveMessageRequest, content_type = "application/json"),
    security(("ccmessaging_token_cookie" = []), ("ccmessaging_token_header" = [])),
    responses(
        (status = 200, description = "Stored (code \"0\"), or bad parameters (code \"3\")", body = LeaveMessageResponse),
        (status = 401, description = "Missing, forged, expired, replaced or revoked token", body = LeaveMessageResponse),
        (status = 403, description = "Browser origin not allowed for the channel", body = LeaveMessageResponse),
        (status = 408, description = "Body not sent in time", body = LeaveMessageResponse),
        (status = 413, description = "Body over 64 KiB", body = LeaveMessageResponse),
        (status = 415, description = "Not application/json", body = LeaveMessageResponse),
        (status = 429, description = "Rate limit exceeded", body = LeaveMessageResponse,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Database unavailable; nothing stored", body = LeaveMessageResponse),
    )
)]
pub async fn leave_message(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<VisitorState>,
    writer: web::Data<Writer>,
) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    let mut from_memory = None;
    let reply = match handle(
        &req,
        payload,
        &state,
        &writer,
        &mut builder,
        &mut from_memory,
    )
    .await
    {
        Ok(()) => LeaveMessageReply::Saved,
        Err(reply) => match from_memory {
            Some(token) if reply.is_refusal_of_the_request() => {
                confirm_token_before_refusal(&state, &token, reply).await
            }
            _ => reply,
        },
    };
    reply.into_response(builder)
}

/// A refusal about the request rather than the token is only sent once the database confirms
/// that the token (known valid from memory) is still current; otherwise the answer is 401.
async fn confirm_token_before_refusal(
    state: &VisitorState,
    token: &VerifiedToken,
    refusal: LeaveMessageReply,
) -> LeaveMessageReply {
    match holder_in_database(state, token).await {
        Ok(Some(_)) => refusal,
        Ok(None) => {
            state.tokens.revoke(&token.hash.0);
            LeaveMessageReply::Unauthorized(NO_LONGER_VALID)
        }
        // Unknown: the database is unreachable; the token was valid when last seen.
        Err(e) => {
            tracing::warn!(error = ?e, "could not confirm a remembered token");
            refusal
        }
    }
}

const NO_LONGER_VALID: &str =
    "the ccmessaging-token was replaced or revoked, or its channel is disabled";

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &VisitorState,
    writer: &Writer,
    builder: &mut actix_web::HttpResponseBuilder,
    from_memory: &mut Option<VerifiedToken>,
) -> Result<(), LeaveMessageReply> {
    let token = verified_token(req, state)?;
    let client_ip = request::client_ip(req, state);
    state.limits.check_ip(client_ip).map_err(|r| {
        counters::rate_limited("ip");
        LeaveMessageReply::RateLimited {
            retry_after_secs: r.0,
        }
    })?;

    let (holder, remembered) = current_holder(state, &token).await?;
    if remembered {
        *from_memory = Some(token.clone());
    }
    state.limits.check_token(&token.hash).map_err(|r| {
        counters::rate_limited("token");
        LeaveMessageReply::RateLimited {
            retry_after_secs: r.0,
        }
    })?;
    let origin = request::origin(req);
    if !request::origin_allowed(req, origin, &holder.origins) {
        return Err(LeaveMessageReply::ForbiddenOrigin);
    }
    if let Some(origin) = origin {
        request::allow_cors(builder, origin);
    }

    let body = request::read_json_body(req, payload)
        .await
        .map_err(|e| match e {
            BodyError::UnsupportedMediaType => LeaveMessageReply::UnsupportedMediaType,
            BodyError::TooLarge => LeaveMessageReply::TooLarge,
            BodyError::TooSlow => LeaveMessageReply::TooSlow,
            BodyError::Unreadable => {
                LeaveMessageReply::BadParams("request body could not be read".to_owned())
            }
        })?;
    let (phone, text) = parse_body(&body).map_err(LeaveMessageReply::BadParams)?;

    let new = NewMessage {
        channel_id: holder.channel_id,
        user_id: token.claims.user_id.as_str().to_owned(),
        user_name: holder.user_name,
        submission_key: submission_key(&token, &phone, &text),
        phone,
        text,
        client_ip,
        forwarded_for: request::joined_header(req.headers(), "x-forwarded-for"),
        user_agent: request::header_str(req, header::USER_AGENT.as_str()).map(str::to_owned),
    };
    match writer.write(new, token.hash.0).await {
        Ok(Outcome::Stored(Stored::New(id))) => {
            tracing::info!(message_id = id, channel = %holder.channel_id, "message stored");
            counters::message_stored();
            Ok(())
        }
        Ok(Outcome::Stored(Stored::AlreadyStored)) => {
            tracing::info!(channel = %holder.channel_id, "resubmission of a stored message");
            counters::message_deduplicated();
            Ok(())
        }
        Ok(Outcome::TokenNoLongerValid) => {
            state.tokens.revoke(&token.hash.0);
            Err(LeaveMessageReply::Unauthorized(NO_LONGER_VALID))
        }
        Err(e) => {
            tracing::error!(error = %e, "storing a message failed");
            counters::database_failure("store_message");
            Err(LeaveMessageReply::Unavailable)
        }
    }
}

/// The first token, from the Cookie header(s) or the `ccmessaging-token` header, whose
/// signature and expiry check out.
fn verified_token(
    req: &HttpRequest,
    state: &VisitorState,
) -> Result<VerifiedToken, LeaveMessageReply> {
    let now = Utc::now();
    let mut error = TokenError::Malformed;
    let mut seen = false;
    for candidate in token_candidates(req) {
        seen = true;
        match state.signing_key.verify(candidate, now) {
            Ok(token) => return Ok(token),
            Err(e) => error = e,
        }
    }
    Err(LeaveMessageReply::Unauthorized(if !seen {
        "the ccmessaging-token is missing"
    } else {
        match error {
            TokenError::Expired => "the ccmessaging-token has expired",
            TokenError::Malformed | TokenError::BadSignature => {
                "the ccmessaging-token is not valid"
            }
        }
    }))
}

fn token_candidates(req: &HttpRequest) -> impl Iterator<Item = &str> {
    let from_cookies = req
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.trim() == TOKEN_NAME)
        .map(|(_, value)| value.trim().trim_matches('"'));
    let from_header = req
        .headers()
        .get_all(TOKEN_NAME)
        .filter_map(|v| v.to_str().ok())
        .map(str::trim);
    from_cookies.chain(from_header).filter(|t| !t.is_empty())
}

/// The token's holder if it is its visitor's current token on an enabled channel, asking the
/// database (not this instance's memory).
async fn holder_in_database(
    state: &VisitorState,
    token: &VerifiedToken,
) -> Result<Option<TokenHolder>, StoreError> {
    state
        .store
        .token_holder(&token.claims, &token.hash, Utc::now())
        .await
}

/// The token's holder, and whether it came from memory (true) rather than the database.
async fn current_holder(
    state: &VisitorState,
    token: &VerifiedToken,
) -> Result<(TokenHolder, bool), LeaveMessageReply> {
    let now = Utc::now();
    if let Some(holder) = state.tokens.get(&token.hash.0, now) {
        return Ok((holder, true));
    }
    match holder_in_database(state, token).await {
        Ok(Some(holder)) => {
            state
                .tokens
                .insert(token.hash.0, holder.clone(), token.claims.expires_at);
            Ok((holder, false))
        }
        Ok(None) => Err(LeaveMessageReply::Unauthorized(NO_LONGER_VALID)),
        Err(e) => {
            tracing::error!(error = ?e, "token lookup failed");
            counters::database_failure("token_lookup");
            Err(LeaveMessageReply::Unavailable)
        }
    }
}

/// Parses and validates the request body into its two fields.
pub fn parse_body(body: &[u8]) -> Result<(PhoneNo, MessageText), String> {
    let raw: RawLeaveMessage = request::parse_object(body)?;
    let phone = string_field("phoneNo", raw.phone_no.as_ref())
        .and_then(PhoneNo::parse)
        .map_err(|e| e.to_string())?;
    let text = string_field("leaveMessage", raw.leave_message.as_ref())
        .and_then(MessageText::parse)
        .map_err(|e| e.to_string())?;
    Ok((phone, text))
}

/// A JSON string field, or an error naming the field and what it was instead.
pub fn string_field<'a>(name: &str, value: Option<&'a Value>) -> Result<&'a str, FieldError> {
    match value {
        None => Err(FieldError::new(name, "is missing")),
        Some(Value::Null) => Err(FieldError::new(name, "must not be null")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::new(name, "must be a string")),
    }
}

/// Identifies a submission: the same token, phone and text are one message.
fn submission_key(token: &VerifiedToken, phone: &PhoneNo, text: &MessageText) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(token.hash.0);
    hasher.update([0]);
    hasher.update(phone.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(text.as_str().as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example_parses() {
        let (phone, text) =
            parse_body(br#"{"phoneNo": "123456", "leaveMessage": "12122331"}"#).unwrap();
        assert_eq!(phone.as_str(), "123456");
        assert_eq!(text.as_str(), "12122331");
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let brackets_in_text = format!(
            r#"{{"phoneNo":"123456","leaveMessage":"{}"}}"#,
            "[{".repeat(500)
        );
        assert!(parse_body(brackets_in_text.as_bytes()).is_ok());
        let escaped_quote = r#"{"phoneNo":"123456","leaveMessage":"say \"[[[\" ok"}"#;
        assert!(parse_body(escaped_quote.as_bytes()).is_ok());
        let deep_value = format!(
            r#"{{"phoneNo":{}1{},"leaveMessage":"hi"}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(
            parse_body(deep_value.as_bytes())
                .unwrap_err()
                .contains("nested")
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = br#"{"phoneNo":"123456","leaveMessage":"hi","extra":{"deep":[1,2,3]}}"#;
        assert!(parse_body(body).is_ok());
    }

    #[test]
    fn each_bad_body_names_its_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "not valid JSON"),
            (b"{", "not valid JSON"),
            (b"[]", "must be a JSON object"),
            (b"\"text\"", "must be a JSON object"),
            (b"null", "must be a JSON object"),
            (b"{\"leaveMessage\":\"hi\"}", "phoneNo is missing"),
            (
                b"{\"phoneNo\":null,\"leaveMessage\":\"hi\"}",
                "phoneNo must not be null",
            ),
            (
                b"{\"phoneNo\":123456,\"leaveMessage\":\"hi\"}",
                "phoneNo must be a string",
            ),
            (
                b"{\"phoneNo\":\"123456\",\"leaveMessage\":[\"hi\"]}",
                "leaveMessage must be a string",
            ),
            (
                b"{\"phoneNo\":\"123456\",\"leaveMessage\":\"  \"}",
                "leaveMessage must not be blank",
            ),
            (
                b"{\"phoneNo\":\"123456\",\"leaveMessage\":\"a\\u0000b\"}",
                "control characters",
            ),
            (
                b"{\"phoneNo\":\"123456\",\"phoneNo\":\"654321\",\"leaveMessage\":\"hi\"}",
                "duplicate field",
            ),
            (
                b"{\"phoneNo\":\"12\xff\",\"leaveMessage\":\"hi\"}",
                "not valid UTF-8",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_body(body).unwrap_err();
            assert!(
                err.contains(expected),
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let mut body = String::from("{\"phoneNo\":\"123456\",\"leaveMessage\":\"hi\",\"x\":");
        body.push_str(&"[".repeat(100_000));
        body.push_str(&"]".repeat(100_000));
        body.push('}');
        let err = parse_body(body.as_bytes()).unwrap_err();
        assert!(err.contains("nested more than 32 levels"), "{err}");
    }
}
