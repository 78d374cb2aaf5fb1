//! Errors of the agent interface: each maps to one status and a JSON body that says what was
//! wrong. 5xx bodies say nothing internal; the cause goes to the log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::{FieldError, MessageId};
use crate::store::{MessageRow, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid agent API key is required: Authorization: Bearer <key>")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no message has id {0}")]
    NotFound(MessageId),
    /// No webhook endpoint, or no delivery of that event to it (the text says which).
    #[error("{0}")]
    NoSuchWebhook(String),
    /// The change does not apply to the message's current state.
    #[error("{reason}")]
    Conflict {
        reason: String,
        status: String,
        assigned_to: Option<String>,
    },
    /// A redelivery of a webhook delivery that is still pending.
    #[error("{0}")]
    DeliveryPending(String),
    /// The client did not finish sending its body within [`super::BODY_TIMEOUT`].
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// Over a limit; may be retried after `retry_after` seconds.
    #[error("{reason}")]
    TooManyRequests {
        reason: &'static str,
        retry_after: u64,
    },
    #[error("the database is unavailable; try again")]
    Unavailable(#[source] StoreError),
}

impl ApiError {
    /// A 409 explaining why `action` does not apply to `message` as it is now.
    pub fn conflict(action: &str, message: &MessageRow, reason: &str) -> Self {
        let holder = message
            .assigned_to
            .as_deref()
            .map(|a| format!(" (assigned to {a})"))
            .unwrap_or_default();
        ApiError::Conflict {
            reason: format!(
                "cannot {action} message {}: it is {}{holder}; {reason}",
                message.id, message.status
            ),
            status: message.status.clone(),
            assigned_to: message.assigned_to.clone(),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorBody<'a> {
    /// bad_request, unauthorized, forbidden, not_found, conflict, request_timeout,
    /// too_many_requests or unavailable.
    error: &'a str,
    /// What was wrong, in words.
    message: String,
    /// With a conflict: the message's current status (or, for a redelivery, the delivery's:
    /// pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    /// With a conflict: the message's current assignee (null if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    assigned_to: Option<Option<&'a str>>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoSuchWebhook(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } | ApiError::DeliveryPending(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let error = match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) | ApiError::NoSuchWebhook(_) => "not_found",
            ApiError::Conflict { .. } | ApiError::DeliveryPending(_) => "conflict",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable(e) => {
                tracing::error!(error = ?e, "agent interface: database failure");
                crate::counters::database_failure(crate::counters::DbOperation::AgentInterface);
                "unavailable"
            }
        };
        let (status, assigned_to) = match self {
            ApiError::Conflict {
                status,
                assigned_to,
                ..
            } => (Some(status.as_str()), Some(assigned_to.as_deref())),
            ApiError::DeliveryPending(_) => (Some("pending"), None),
            _ => (None, None),
        };
        let mut builder = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                builder.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                builder.insert_header(("Retry-After", retry_after.to_string()));
            }
            // The body was not read to its end: the connection cannot carry another request.
            ApiError::RequestTimeout => {
                builder.force_close();
            }
            _ => {}
        }
        builder.json(ApiErrorBody {
            error,
            message: self.to_string(),
            status,
            assigned_to,
        })
    }
}
