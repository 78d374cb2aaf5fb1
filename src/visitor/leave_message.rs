//! `POST …/doLeaveMessage`: store a visitor's message, answering only after it is committed.
//!
//! Three stages, values flowing forward: [`authenticate`] (the token and its holder; see that
//! module) → [`accept`] (per-token limit → origin → content type → size → fields → write) →
//! the answer in the vendor's shape. Nothing about the body is read until the token has been
//! accepted; and a refusal of the request is only sent once a token known from memory is
//! confirmed current ([`confirm_before_refusal`]).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::authenticate::{Authenticated, authenticate, confirm_before_refusal};
use super::cors::Cors;
use super::vendor_reply::{self, LeaveMessageResponse, Refusal};
use super::{VisitorState, request};
use crate::counters::{self, DbOperation};
use crate::credentials::VerifiedToken;
use crate::domain::{CallbackAfter, MessageText, PhoneNo};
use crate::store::messages::{NewMessage, Outcome, Stored};
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
    #[serde(
        default,
        deserialize_with = "request::present",
        rename = "callbackAfter"
    )]
    callback_after: Option<Value>,
}

/// A request body, parsed: what [`store`] writes.
#[derive(Debug)]
pub struct LeaveMessageBody {
    pub phone: PhoneNo,
    pub text: MessageText,
    /// `None`: as soon as possible.
    pub callback_after: Option<CallbackAfter>,
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
    /// Message text: 1-2000 characters after trimming, something visible among them; no
    /// control characters except tab, CR, LF; no bidirectional override or isolate characters.
    #[schema(
        rename = "leaveMessage",
        min_length = 1,
        max_length = 2000,
        example = "12122331"
    )]
    leave_message: String,
    /// Optional, beyond the vendor's interface: do not call before this time. An RFC 3339 time
    /// with an offset (`Z` or `±hh:mm`); a time in the past counts as now, one more than 30
    /// days ahead is refused. Absent or `null`: as soon as possible. Any other JSON type, an
    /// empty text or a time without an offset is refused (code "3" naming callbackAfter).
    #[schema(
        rename = "callbackAfter",
        format = DateTime,
        nullable = true,
        max_length = 64,
        example = "2026-12-01T18:00:00+01:00"
    )]
    callback_after: Option<String>,
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
    let caller = match authenticate(&req, &state).await {
        Ok(caller) => caller,
        Err(refusal) => {
            let cors = Cors::for_refusal(&req, &state, &refusal).await;
            return vendor_reply::leave_message(Err(refusal), cors);
        }
    };
    let (outcome, cors) = accept(&req, payload, &state, &writer, &caller).await;
    let outcome = confirm_before_refusal(&state, &caller, outcome).await;
    vendor_reply::leave_message(outcome, cors)
}

/// The request of an authenticated caller: within its limit, from an allowed origin, with a
/// good body, stored. Returns the outcome and the CORS allowance the answer carries.
async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &VisitorState,
    writer: &Writer,
    caller: &Authenticated,
) -> (Result<(), Refusal>, Cors) {
    // Decided first so that the per-token limit's refusal, checked before the origin is
    // refused, still carries the CORS headers for an allowed origin.
    let allowance = Cors::for_channel(req, &caller.holder.origins, state.own_origin.as_ref());
    if let Err(refusal) = state.limit_token(&caller.token) {
        return (Err(refusal), allowance.unwrap_or_default());
    }
    let cors = match allowance {
        Ok(cors) => cors,
        Err(refusal) => return (Err(refusal), Cors::default()),
    };
    let stored = async {
        let body = request::read_body(req, payload).await?;
        let parsed = parse_body(&body, Utc::now()).map_err(Refusal::BadParams)?;
        store(req, state, writer, caller, parsed).await
    };
    (stored.await, cors)
}

/// Hands the message to the writer and waits for its commit.
async fn store(
    req: &HttpRequest,
    state: &VisitorState,
    writer: &Writer,
    caller: &Authenticated,
    parsed: LeaveMessageBody,
) -> Result<(), Refusal> {
    let LeaveMessageBody {
        phone,
        text,
        callback_after,
    } = parsed;
    let channel = caller.holder.channel_id;
    let new = NewMessage {
        channel_id: channel,
        user_id: caller.token.claims.user_id.as_str().to_owned(),
        user_name: caller.holder.user_name.clone(),
        submission_key: submission_key(&caller.token, &phone, &text),
        phone,
        text,
        callback_after,
        client_ip: caller.client_ip,
        forwarded_for: request::joined_header(req.headers(), "x-forwarded-for"),
        user_agent: request::header_str(req, header::USER_AGENT.as_str()).map(str::to_owned),
    };
    // Said by the request's one log line (see `telemetry`).
    let span = tracing::Span::current();
    span.record("channel", tracing::field::display(channel));
    match writer.write(new, caller.token.hash.0).await {
        Ok(Outcome::Stored(Stored::New(id))) => {
            span.record("message_id", id);
            counters::message_stored();
            Ok(())
        }
        Ok(Outcome::Stored(Stored::AlreadyStored)) => {
            span.record("resubmission", true);
            counters::message_deduplicated();
            Ok(())
        }
        Ok(Outcome::TokenNoLongerValid) => Err(state.forget_token(&caller.token)),
        Err(e) => {
            tracing::error!(error = %e, "storing a message failed");
            counters::database_failure(DbOperation::StoreMessage);
            Err(Refusal::Unavailable)
        }
    }
}

/// Parses and validates the request body, as received at `now`; the error is the
/// `resultDesc` naming the first field refused.
pub fn parse_body(body: &[u8], now: DateTime<Utc>) -> Result<LeaveMessageBody, String> {
    let raw: RawLeaveMessage = request::parse_object(body)?;
    let phone = request::string_field("phoneNo", raw.phone_no.as_ref())
        .and_then(PhoneNo::parse)
        .map_err(|e| e.to_string())?;
    let text = request::string_field("leaveMessage", raw.leave_message.as_ref())
        .and_then(MessageText::parse)
        .map_err(|e| e.to_string())?;
    let callback_after = match raw.callback_after {
        // Absent, or null as JSON clients write an unset optional field: as soon as possible.
        None | Some(Value::Null) => None,
        Some(value) => Some(
            request::string_field(CallbackAfter::FIELD, Some(&value))
                .and_then(|text| CallbackAfter::parse(text, now))
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok(LeaveMessageBody {
        phone,
        text,
        callback_after,
    })
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

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse(body: &[u8]) -> Result<LeaveMessageBody, String> {
        parse_body(body, now())
    }

    #[test]
    fn the_seed_example_parses() {
        let parsed = parse(br#"{"phoneNo": "123456", "leaveMessage": "12122331"}"#).unwrap();
        assert_eq!(parsed.phone.as_str(), "123456");
        assert_eq!(parsed.text.as_str(), "12122331");
        assert_eq!(parsed.callback_after, None);
    }

    #[test]
    fn callback_after_is_optional_and_null_means_as_soon_as_possible() {
        let at =
            |body: &str| parse(body.as_bytes()).map(|p| p.callback_after.map(CallbackAfter::at));
        assert_eq!(
            at(r#"{"phoneNo":"123456","leaveMessage":"hi","callbackAfter":null}"#),
            Ok(None)
        );
        assert_eq!(
            at(
                r#"{"phoneNo":"123456","leaveMessage":"hi","callbackAfter":"2026-12-01T18:00:00+01:00"}"#
            ),
            Ok(Some(now() + chrono::Duration::hours(7)))
        );
        assert_eq!(
            at(
                r#"{"phoneNo":"123456","leaveMessage":"hi","callbackAfter":"2020-01-01T00:00:00Z"}"#
            ),
            Ok(Some(now()))
        );
    }

    #[test]
    fn a_bad_callback_after_is_named_and_its_text_not_echoed() {
        let long = format!("\"{}\"", "9".repeat(10_000));
        for (value, expected) in [
            ("\"\"", "callbackAfter must be an RFC 3339 time"),
            ("\"tomorrow\"", "callbackAfter must be an RFC 3339 time"),
            (
                "\"2026-12-01T18:00:00\"",
                "callbackAfter must be an RFC 3339 time",
            ),
            (
                "\"2027-01-01T00:00:00Z\"",
                "callbackAfter must be at most 30 days ahead",
            ),
            ("1764612000", "callbackAfter must be a string"),
            ("true", "callbackAfter must be a string"),
            ("{}", "callbackAfter must be a string"),
            (
                "[\"2026-12-01T18:00:00Z\"]",
                "callbackAfter must be a string",
            ),
            (long.as_str(), "callbackAfter must be an RFC 3339 time"),
        ] {
            let body =
                format!(r#"{{"phoneNo":"123456","leaveMessage":"hi","callbackAfter":{value}}}"#);
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.starts_with(expected), "{value:.40}: {err}");
            assert!(!err.contains("tomorrow") && !err.contains("99999"), "{err}");
        }
        // The fields are checked in order: a bad phone number is reported first.
        let body = r#"{"phoneNo":"x","leaveMessage":"hi","callbackAfter":"later"}"#;
        assert!(parse(body.as_bytes()).unwrap_err().starts_with("phoneNo "));
        let twice =
            r#"{"phoneNo":"123456","leaveMessage":"hi","callbackAfter":null,"callbackAfter":null}"#;
        assert!(
            parse(twice.as_bytes())
                .unwrap_err()
                .contains("duplicate field")
        );
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let brackets_in_text = format!(
            r#"{{"phoneNo":"123456","leaveMessage":"{}"}}"#,
            "[{".repeat(500)
        );
        assert!(parse(brackets_in_text.as_bytes()).is_ok());
        let escaped_quote = r#"{"phoneNo":"123456","leaveMessage":"say \"[[[\" ok"}"#;
        assert!(parse(escaped_quote.as_bytes()).is_ok());
        let deep_value = format!(
            r#"{{"phoneNo":{}1{},"leaveMessage":"hi"}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(parse(deep_value.as_bytes()).unwrap_err().contains("nested"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = br#"{"phoneNo":"123456","leaveMessage":"hi","extra":{"deep":[1,2,3]}}"#;
        assert!(parse(body).is_ok());
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
            let err = parse(body).unwrap_err();
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
        let err = parse(body.as_bytes()).unwrap_err();
        assert!(err.contains("nested more than 32 levels"), "{err}");
    }
}
