//! The vendor's wire shapes. Nothing else in the code spells `returnCode`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;

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

const PARAMS_ERROR: &str = "the leaveMessageParams is error.";
const SAVE_OK: &str = "Save leaveMessage success!";
const SAVE_FAILED: &str = "Save leaveMessage failed!";

/// Every way doLeaveMessage can end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveMessageReply {
    Saved,
    /// Bad parameters: HTTP 200, code "3"; the text says which field and why.
    BadParams(String),
    TooLarge,
    TooSlow,
    UnsupportedMediaType,
    Unauthorized(&'static str),
    ForbiddenOrigin,
    RateLimited {
        retry_after_secs: u64,
    },
    Unavailable,
}

impl LeaveMessageReply {
    /// A refusal because of the request itself (its rate, origin, body), not its token or the
    /// database.
    pub fn is_refusal_of_the_request(&self) -> bool {
        matches!(
            self,
            Self::BadParams(_)
                | Self::TooLarge
                | Self::TooSlow
                | Self::UnsupportedMediaType
                | Self::ForbiddenOrigin
                | Self::RateLimited { .. }
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Saved | Self::BadParams(_) => StatusCode::OK,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::ForbiddenOrigin => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `returnCode`/`resultCode` value.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Saved => "0",
            Self::BadParams(_)
            | Self::TooLarge
            | Self::TooSlow
            | Self::UnsupportedMediaType
            | Self::ForbiddenOrigin => "3",
            Self::Unauthorized(_) => "401",
            Self::RateLimited { .. } => "429",
            Self::Unavailable => "13",
        }
    }

    pub fn into_response(self, mut builder: HttpResponseBuilder) -> HttpResponse {
        let code = self.code();
        let (description, result_desc): (&str, &str) = match &self {
            Self::Saved => ("", SAVE_OK),
            Self::BadParams(why) => (PARAMS_ERROR, why),
            Self::TooLarge => (PARAMS_ERROR, "request body is larger than 64 KiB"),
            Self::TooSlow => (PARAMS_ERROR, "request body was not sent in time"),
            Self::UnsupportedMediaType => (
                PARAMS_ERROR,
                "Content-Type must be application/json; charset=UTF-8",
            ),
            Self::Unauthorized(why) => ("the ccmessaging-token is invalid.", why),
            Self::ForbiddenOrigin => (
                "the request origin is not allowed.",
                "this web origin is not allowed for the channel",
            ),
            Self::RateLimited { .. } => ("too many requests.", "rate limit exceeded, retry later"),
            Self::Unavailable => (SAVE_FAILED, SAVE_FAILED),
        };
        builder.status(self.status());
        if let Self::RateLimited { retry_after_secs } = self {
            builder.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        json(
            builder,
            &LeaveMessageResponse {
                return_code: code,
                result_code: code,
                description,
                result_desc,
            },
        )
    }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyTokenReply {
    Issued {
        token: String,
        set_cookie: String,
    },
    /// Unknown or disabled channel, or bad fields: HTTP 200, code "3".
    Refused(String),
    TooLarge,
    TooSlow,
    UnsupportedMediaType,
    ForbiddenOrigin,
    RateLimited {
        retry_after_secs: u64,
    },
    Unavailable,
}

impl ApplyTokenReply {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Issued { .. } | Self::Refused(_) => StatusCode::OK,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ForbiddenOrigin => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn into_response(self, mut builder: HttpResponseBuilder) -> HttpResponse {
        builder.status(self.status());
        let (code, desc, token): (&str, &str, Option<&str>) = match &self {
            Self::Issued { token, set_cookie } => {
                if let Ok(value) = HeaderValue::from_str(set_cookie) {
                    builder.insert_header((header::SET_COOKIE, value));
                }
                ("0", "apply token success.", Some(token))
            }
            Self::Refused(why) => ("3", why, None),
            Self::TooLarge => ("3", "request body is larger than 64 KiB", None),
            Self::TooSlow => ("3", "request body was not sent in time", None),
            Self::UnsupportedMediaType => (
                "3",
                "Content-Type must be application/json; charset=UTF-8",
                None,
            ),
            Self::ForbiddenOrigin => ("3", "this web origin is not allowed for the channel", None),
            Self::RateLimited { retry_after_secs } => {
                builder.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                ("429", "rate limit exceeded, retry later", None)
            }
            Self::Unavailable => ("13", "apply token failed.", None),
        };
        json(
            builder,
            &ApplyTokenResponse {
                result_code: code,
                result_desc: desc,
                token,
            },
        )
    }
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

    async fn body_of(resp: HttpResponse) -> String {
        String::from_utf8(to_bytes(resp.into_body()).await.unwrap().to_vec()).unwrap()
    }

    #[actix_web::test]
    async fn success_is_the_seed_documents_bytes() {
        let resp = LeaveMessageReply::Saved.into_response(HttpResponse::Ok());
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            body_of(resp).await,
            r#"{"returnCode":"0","resultCode":"0","description":"","resultDesc":"Save leaveMessage success!"}"#
        );
    }

    #[actix_web::test]
    async fn database_failure_is_code_13() {
        let resp = LeaveMessageReply::Unavailable.into_response(HttpResponse::Ok());
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body_of(resp).await,
            r#"{"returnCode":"13","resultCode":"13","description":"Save leaveMessage failed!","resultDesc":"Save leaveMessage failed!"}"#
        );
    }

    #[actix_web::test]
    async fn rate_limited_carries_retry_after() {
        let resp = LeaveMessageReply::RateLimited {
            retry_after_secs: 7,
        }
        .into_response(HttpResponse::Ok());
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "7");
        assert!(
            body_of(resp)
                .await
                .starts_with(r#"{"returnCode":"429","resultCode":"429","#)
        );
    }
}
