//! [`Refusal`]: every way either visitor call can refuse, with its HTTP status and vendor code.
//! `vendor_reply` renders it in each call's wire shape.

use actix_web::http::StatusCode;

/// Every way either call can refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Bad parameters (or, for applyToken, an unknown or disabled channel): HTTP 200, code
    /// "3"; the text says which field and why.
    BadParams(String),
    TooLarge,
    TooSlow,
    UnsupportedMediaType,
    /// doLeaveMessage only: the token is missing, forged, expired, replaced or revoked.
    Unauthorized(&'static str),
    ForbiddenOrigin,
    RateLimited {
        retry_after_secs: u64,
    },
    Unavailable,
}

impl Refusal {
    /// A refusal because of the request itself (its rate, origin, body), not its token or the
    /// database.
    pub fn is_about_the_request(&self) -> bool {
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
            Self::BadParams(_) => StatusCode::OK,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::ForbiddenOrigin => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `resultCode` value (and doLeaveMessage's `returnCode`).
    pub fn code(&self) -> &'static str {
        match self {
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
}
