//! `GET /api/v1/queue`: how many messages wait, are due, overdue, assigned, and the caller's.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::auth::Agent;
use super::error::{ApiError, ApiErrorBody};
use super::filter::channel_param;
use crate::store::Store;
use crate::store::queue::QueueCounts;

pub const PATH: &str = "/api/v1/queue";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct QueueParams {
    /// Only this channel's messages.
    #[param(format = Uuid)]
    channel_id: Option<String>,
}

/// The queue's counts now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    /// Pending messages, due or not.
    #[schema(minimum = 0)]
    pending: i64,
    /// Pending messages whose dueAt is not in the future.
    #[schema(minimum = 0)]
    due: i64,
    /// Messages not processed whose overdueAt has passed (pending or assigned).
    #[schema(minimum = 0)]
    overdue: i64,
    /// Assigned messages (to anyone).
    #[schema(minimum = 0)]
    assigned: i64,
    /// Messages assigned to the caller.
    #[schema(minimum = 0)]
    mine: i64,
    /// Now minus the earliest dueAt among the due messages, in seconds; 0 when none is due.
    #[schema(minimum = 0)]
    oldest_due_age_seconds: i64,
}

impl From<QueueCounts> for Queue {
    fn from(c: QueueCounts) -> Self {
        Queue {
            pending: c.pending,
            due: c.due,
            overdue: c.overdue,
            assigned: c.assigned,
            mine: c.mine,
            oldest_due_age_seconds: c.oldest_due_age_seconds,
        }
    }
}

/// The queue's counts now, of all channels or one.
#[utoipa::path(get, path = "/api/v1/queue", tag = "agent", params(QueueParams),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Queue), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn counts(
    agent: Agent,
    params: web::Query<QueueParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let channel = channel_param(&params.channel_id)?;
    let counts = store.queue_counts(&agent.name, channel).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(Queue::from(counts)))
}
