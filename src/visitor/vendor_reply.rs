//! The vendor's wire shapes. Nothing else in the code spells `returnCode`.
//!
//! Both calls end in one of the same [`Refusal`]s or in their own success; [`leave_message`]
//! and [`apply_token`] render either in that call's shape, with the CORS allowance the request
//! earned.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;

use super::cors::Cors;
pub use super::refusal::Refusal;
use crate::counters;

/// The answer to doLeaveMessage, in the seed document's field order.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    example = json!({"returnCode": "0", "resultCode": "0", "description": "", "resultDesc": "Save leaveMessage success!"})
)]
pub struct LeaveMessageResponse<'a> {
    /// "0" stored; "3" bad parameters; "401" token; "429" rate limit; "13" database failure.
    return_code: &'a str,
    result_code: &'a str,
    description: &'a str,
    result_desc: &'a str,
}

/// The answer to applyToken.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyTokenResponse<'a> {
    /// "0" issued; "3" refused (the description says why); "429" rate limit; "13" database failure.
    result_code: &'a str,
    result_desc: &'a str,
    /// The ccmessaging-token (also set as a cookie); only when issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

const PARAMS_ERROR: &str = "the leaveMessageParams is error.";
const SAVE_OK: &str = "Save leaveMessage success!";
const SAVE_FAILED: &str = "Save leaveMessage failed!";
const TOO_LARGE: &str = "request body is larger than 64 KiB";
const TOO_SLOW: &str = "request body was not sent in time";
const NOT_JSON: &str = "Content-Type must be application/json; charset=UTF-8";
const ORIGIN_REFUSED: &str = "this web origin is not allowed for the channel";
const RATE_LIMITED: &str = "rate limit exceeded, retry later";

/// A builder with a refusal's status and headers.
fn refused(refusal: &Refusal, cors: Cors) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(refusal.status());
    cors.insert_into(&mut builder);
    if let Refusal::RateLimited { retry_after_secs } = refusal {
        builder.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
    }
    builder
}

/// doLeaveMessage's answer: stored, or refused.
pub fn leave_message(outcome: Result<(), Refusal>, cors: Cors) -> HttpResponse {
    // Counted here, where every doLeaveMessage answer passes, by its resultCode.
    counters::leave_message_answer(outcome.as_ref().map_or_else(Refusal::code, |()| "0"));
    let refusal = match outcome {
        Ok(()) => {
            let mut builder = HttpResponse::Ok();
            cors.insert_into(&mut builder);
            return json(builder, &leave_message_body("0", "", SAVE_OK));
        }
        Err(refusal) => refusal,
    };
    let (description, result_desc): (&str, &str) = match &refusal {
        Refusal::BadParams(why) => (PARAMS_ERROR, why),
        Refusal::TooLarge => (PARAMS_ERROR, TOO_LARGE),
        Refusal::TooSlow => (PARAMS_ERROR, TOO_SLOW),
        Refusal::UnsupportedMediaType => (PARAMS_ERROR, NOT_JSON),
        Refusal::Unauthorized(why) => ("the ccmessaging-token is invalid.", why),
        Refusal::ForbiddenOrigin => ("the request origin is not allowed.", ORIGIN_REFUSED),
        Refusal::RateLimited { .. } => ("too many requests.", RATE_LIMITED),
        Refusal::Unavailable => (SAVE_FAILED, SAVE_FAILED),
    };
    let body = leave_message_body(refusal.code(), description, result_desc);
    json(refused(&refusal, cors), &body)
}

fn leave_message_body<'a>(
    code: &'a str,
    description: &'a str,
    result_desc: &'a str,
) -> LeaveMessageResponse<'a> {
    LeaveMessageResponse {
        return_code: code,
        result_code: code,
        description,
        result_desc,
    }
}

/// A token applyToken issued, and the cookie that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub set_cookie: String,
}

/// applyToken's answer: issued, or refused.
pub fn apply_token(outcome: Result<Issued, Refusal>, cors: Cors) -> HttpResponse {
    // Counted here, where every applyToken answer passes, by its resultCode.
    counters::apply_token_answer(outcome.as_ref().map_or_else(Refusal::code, |_| "0"));
    let refusal = match outcome {
        Ok(issued) => {
            let mut builder = HttpResponse::Ok();
            cors.insert_into(&mut builder);
            if let Ok(value) = HeaderValue::from_str(&issued.set_cookie) {
                builder.insert_header((header::SET_COOKIE, value));
            }
            let body = ApplyTokenResponse {
                result_code: "0",
                result_desc: "apply token success.",
                token: Some(&issued.token),
            };
            return json(builder, &body);
        }
        Err(refusal) => refusal,
    };
    let result_desc: &str = match &refusal {
        Refusal::BadParams(why) => why,
        Refusal::TooLarge => TOO_LARGE,
        Refusal::TooSlow => TOO_SLOW,
        Refusal::UnsupportedMediaType => NOT_JSON,
        Refusal::Unauthorized(why) => why,
        Refusal::ForbiddenOrigin => ORIGIN_REFUSED,
        Refusal::RateLimited { .. } => RATE_LIMITED,
        Refusal::Unavailable => "apply token failed.",
    };
    let body = ApplyTokenResponse {
        result_code: refusal.code(),
        result_desc,
        token: None,
    };
    json(refused(&refusal, cors), &body)
}

fn json(mut builder: HttpResponseBuilder, body: &impl Serialize) -> HttpResponse {
    // Serializing a struct of strings cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    builder
        .insert_header((header::CONTENT_TYPE, "application/json;charset=UTF-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use actix_web::http::StatusCode;

    async fn body_of(resp: HttpResponse) -> String {
        String::from_utf8(to_bytes(resp.into_body()).await.unwrap().to_vec()).unwrap()
    }

    /// The answer counters are registered at start with a fixed set of codes; a refusal whose
    /// code is not in it would be missing from /metrics until it first happened.
    #[test]
    fn every_refusal_code_is_registered_for_both_calls() {
        let refusals = [
            Refusal::BadParams(String::new()),
            Refusal::TooLarge,
            Refusal::TooSlow,
            Refusal::UnsupportedMediaType,
            Refusal::Unauthorized(""),
            Refusal::ForbiddenOrigin,
            Refusal::RateLimited {
                retry_after_secs: 1,
            },
            Refusal::Unavailable,
        ];
        assert!(counters::LEAVE_MESSAGE_RESULT_CODES.contains(&"0"));
        assert!(counters::APPLY_TOKEN_RESULT_CODES.contains(&"0"));
        for refusal in &refusals {
            assert!(
                counters::LEAVE_MESSAGE_RESULT_CODES.contains(&refusal.code()),
                "{refusal:?}"
            );
            // applyToken never checks a visitor token, so it never answers 401.
            if !matches!(refusal, Refusal::Unauthorized(_)) {
                assert!(
                    counters::APPLY_TOKEN_RESULT_CODES.contains(&refusal.code()),
                    "{refusal:?}"
                );
            }
        }
    }

    #[actix_web::test]
    async fn success_is_the_seed_documents_bytes() {
        let resp = leave_message(Ok(()), Cors::default());
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            body_of(resp).await,
            r#"{"returnCode":"0","resultCode":"0","description":"","resultDesc":"Save leaveMessage success!"}"#
        );
    }

    #[actix_web::test]
    async fn database_failure_is_code_13() {
        let resp = leave_message(Err(Refusal::Unavailable), Cors::default());
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body_of(resp).await,
            r#"{"returnCode":"13","resultCode":"13","description":"Save leaveMessage failed!","resultDesc":"Save leaveMessage failed!"}"#
        );
    }

    #[actix_web::test]
    async fn rate_limited_carries_retry_after() {
        let resp = leave_message(
            Err(Refusal::RateLimited {
                retry_after_secs: 7,
            }),
            Cors::default(),
        );
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "7");
        assert!(
            body_of(resp)
                .await
                .starts_with(r#"{"returnCode":"429","resultCode":"429","#)
        );
    }
}
