//! `GET /api/v1/messages/{id}/history`: what happened to a message, oldest first.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::auth::Agent;
use super::error::{ApiError, ApiErrorBody};
use crate::domain::MessageId;
use crate::store::Store;
use crate::store::history::HistoryEntry;

/// A message's history, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct History {
    items: Vec<HistoryItem>,
}

/// One thing that happened to a message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    at: DateTime<Utc>,
    /// The agent who did it; null for `stored`. For a release because an agent was disabled
    /// (reason `agent_disabled`), the disabled agent.
    actor: Option<String>,
    #[schema(pattern = "^(stored|claim|assign|release|attempt|process)$")]
    action: String,
    /// null for `stored`.
    #[schema(pattern = "^(pending|assigned|processed)$")]
    from_status: Option<String>,
    #[schema(pattern = "^(pending|assigned|processed)$")]
    to_status: String,
    /// An attempt's result: reached, no_answer, busy, voicemail, wrong_number or spam.
    result: Option<String>,
    /// The note given with an attempt or a process.
    note: Option<String>,
    /// Who the message was assigned to after this (claim, assign; an attempt that closed it).
    assigned_to: Option<String>,
    /// The outcome, when this closed the message (process, or an attempt).
    outcome: Option<String>,
    /// Why a change no agent asked for was made: `agent_disabled`.
    reason: Option<String>,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(entry: HistoryEntry) -> Self {
        HistoryItem {
            at: entry.at,
            actor: entry.agent,
            action: entry.action,
            from_status: entry.from_status,
            to_status: entry.to_status,
            result: entry.result,
            note: entry.note,
            assigned_to: entry.assigned_to,
            outcome: entry.outcome,
            reason: entry.reason,
        }
    }
}

/// A message's history, oldest first: `stored` (actor null), then every claim, assign,
/// release (also by an agent's disabling), attempt and process, with who did it.
#[utoipa::path(get, path = "/api/v1/messages/{id}/history", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = History), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn history(
    _agent: Agent,
    id: web::Path<MessageId>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let entries = store.history(id).await?.ok_or(ApiError::NotFound(id))?;
    let items = entries.into_iter().map(HistoryItem::from).collect();
    Ok(HttpResponse::Ok().json(History { items }))
}
