//! List, read and change messages.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::Agent;
use super::cursor;
use super::error::{ApiError, ApiErrorBody};
use crate::domain::{AgentName, ChannelId, Outcome, PhoneNo, Status, is_forbidden_control};
use crate::state::AppState;
use crate::store;
use crate::store::queue::{self, Filter, Message, Position};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
pub const MAX_NOTE_CHARS: usize = 2000;

/// Query parameters of the list and the export, as received.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// pending, assigned or processed.
    #[param(pattern = "^(pending|assigned|processed)$")]
    status: Option<String>,
    /// A Configuration ID.
    #[param(format = Uuid)]
    channel_id: Option<String>,
    /// Matched on its digits: "+1 555 0107" and "15550107" find the same messages.
    #[param(pattern = r"^\+?[0-9 .()\-]{3,32}$")]
    phone_no: Option<String>,
    /// An agent's name (assignedTo).
    agent: Option<String>,
    /// receivedAt at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// receivedAt before this RFC 3339 time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Page size, 1-500 (default 50); not used by the export.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// nextCursor of the previous page; not used by the export.
    cursor: Option<String>,
}

impl ListParams {
    /// The filters, parsed; empty parameters count as absent.
    pub fn filter(&self) -> Result<Filter, ApiError> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let bad = |e: crate::domain::FieldError| ApiError::BadRequest(e.to_string());
        Ok(Filter {
            status: given(&self.status)
                .map(Status::parse)
                .transpose()
                .map_err(bad)?,
            channel_id: given(&self.channel_id)
                .map(|c| ChannelId::parse(c).map(|id| id.as_uuid()))
                .transpose()
                .map_err(bad)?,
            phone_digits: given(&self.phone_no)
                .map(|p| PhoneNo::parse(p).map(|p| p.digits().to_owned()))
                .transpose()
                .map_err(bad)?,
            agent: given(&self.agent)
                .map(|a| AgentName::parse(a).map(|a| a.as_str().to_owned()))
                .transpose()
                .map_err(bad)?,
            from: given(&self.from)
                .map(|t| parse_time("from", t))
                .transpose()?,
            to: given(&self.to).map(|t| parse_time("to", t)).transpose()?,
        })
    }

    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.as_deref().map(str::trim) {
            None | Some("") => Ok(DEFAULT_LIMIT),
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}"
                    ))
                }),
        }
    }

    fn after(&self) -> Result<Option<Position>, ApiError> {
        match self.cursor.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => cursor::decode(raw).map(Some).ok_or_else(|| {
                ApiError::BadRequest("cursor is not one this service gave out".to_owned())
            }),
        }
    }
}

fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{field} must be an RFC 3339 time such as 2026-11-26T09:00:00Z"
            ))
        })
}

/// One page of the list, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    items: Vec<Message>,
    next_cursor: Option<String>,
}

/// List messages, oldest first, with filters and keyset pagination.
#[utoipa::path(get, path = "/api/v1/messages", tag = "agent", params(ListParams),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Page), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn list(
    _agent: Agent,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = params.filter()?;
    let limit = params.limit()?;
    let after = params.after()?;
    // One extra row tells whether another page follows.
    let mut items = state
        .db(move |pool| async move { queue::list(&pool, &filter, after, limit + 1).await })
        .await?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = more.then(|| items.last()).flatten().map(|m| {
        cursor::encode(Position {
            received_at: m.received_at,
            id: m.id,
        })
    });
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

/// A message id from the path; anything else is a 400.
fn message_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("{raw:?} is not a message id")))
}

/// One message.
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn get(
    _agent: Agent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&path)?;
    let message = state
        .db(move |pool| async move { queue::get(&pool, id).await })
        .await?
        .ok_or(ApiError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(message))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ClaimNextParams {
    /// Only this channel's pending messages.
    #[param(format = Uuid)]
    channel_id: Option<String>,
}

/// Assign the oldest pending message to the caller; 204 when there is none.
#[utoipa::path(post, path = "/api/v1/messages/claim-next", tag = "agent", params(ClaimNextParams),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 204, description = "Nothing pending"),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn claim_next(
    agent: Agent,
    params: web::Query<ClaimNextParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let channel = params
        .channel_id
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .map(|c| ChannelId::parse(c).map(|id| id.as_uuid()))
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let name = agent.name;
    let claimed = state
        .db(move |pool| async move { queue::claim_next(&pool, &name, channel).await })
        .await?;
    match claimed {
        Some(message) => Ok(HttpResponse::Ok().json(message)),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

/// pending → assigned to the caller.
#[utoipa::path(post, path = "/api/v1/messages/{id}/claim", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn claim(
    agent: Agent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&path)?;
    let name = agent.name;
    let changed = state
        .db(move |pool| async move { queue::claim(&pool, id, &name).await })
        .await?;
    answer(
        &state,
        id,
        changed,
        "claim",
        "only pending messages can be claimed",
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AssignBody {
    /// Name of the agent to assign the message to.
    #[schema(required = true, value_type = String, min_length = 1, pattern = r"\S")]
    agent: Option<String>,
}

/// Admins only: pending or assigned → assigned to the named agent.
#[utoipa::path(post, path = "/api/v1/messages/{id}/assign", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    request_body = AssignBody,
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn assign(
    agent: Agent,
    path: web::Path<String>,
    body: web::Json<AssignBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !agent.is_admin {
        return Err(ApiError::Forbidden("only admins may assign messages"));
    }
    let id = message_id(&path)?;
    let to = body
        .agent
        .as_deref()
        .ok_or_else(|| {
            ApiError::BadRequest("agent is required: the name of the agent to assign to".to_owned())
        })
        .and_then(|a| AgentName::parse(a).map_err(|e| ApiError::BadRequest(e.to_string())))?;
    let to = to.as_str();
    let target = to.to_owned();
    if !state
        .db(move |pool| async move { store::agents::exists(&pool, &target).await })
        .await?
    {
        return Err(ApiError::BadRequest(format!("no agent is named {to:?}")));
    }
    let (by, target) = (agent.name, to.to_owned());
    let changed = state
        .db(move |pool| async move { queue::assign(&pool, id, &by, &target).await })
        .await?;
    answer(
        &state,
        id,
        changed,
        "assign",
        "processed messages cannot be reassigned",
    )
    .await
}

/// assigned → pending, by its assignee or an admin.
#[utoipa::path(post, path = "/api/v1/messages/{id}/release", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn release(
    agent: Agent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&path)?;
    let changed = state
        .db(move |pool| async move { queue::release(&pool, id, &agent.name, agent.is_admin).await })
        .await?;
    answer(
        &state,
        id,
        changed,
        "release",
        "only its assignee or an admin can release an assigned message",
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProcessBody {
    /// called_back, no_answer, wrong_number or spam.
    #[schema(required = true, value_type = String, pattern = "^(called_back|no_answer|wrong_number|spam)$")]
    outcome: Option<String>,
    /// Optional, up to 2000 characters.
    #[schema(max_length = 2000)]
    note: Option<String>,
}

/// assigned → processed with an outcome and note, by its assignee or an admin.
#[utoipa::path(post, path = "/api/v1/messages/{id}/process", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    request_body = ProcessBody,
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn process(
    agent: Agent,
    path: web::Path<String>,
    body: web::Json<ProcessBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&path)?;
    let outcome = body
        .outcome
        .as_deref()
        .ok_or_else(|| {
            ApiError::BadRequest(
                "outcome is required: called_back, no_answer, wrong_number or spam".to_owned(),
            )
        })
        .and_then(|o| Outcome::parse(o).map_err(|e| ApiError::BadRequest(e.to_string())))?;
    let note = body
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if let Some(note) = note {
        if note.chars().count() > MAX_NOTE_CHARS {
            return Err(ApiError::BadRequest(format!(
                "note must be at most {MAX_NOTE_CHARS} characters long"
            )));
        }
        if note.chars().any(is_forbidden_control) {
            return Err(ApiError::BadRequest(
                "note must not contain control characters other than tab, CR and LF".to_owned(),
            ));
        }
    }
    let note = note.map(str::to_owned);
    let changed = state
        .db(move |pool| async move {
            queue::process(
                &pool,
                id,
                &agent.name,
                agent.is_admin,
                outcome,
                note.as_deref(),
            )
            .await
        })
        .await?;
    answer(
        &state,
        id,
        changed,
        "process",
        "only an assigned message can be processed, by its assignee or an admin",
    )
    .await
}

/// 200 with the changed message; otherwise 404 if there is no such message, else 409 naming
/// its current status and assignee.
async fn answer(
    state: &AppState,
    id: i64,
    changed: Option<Message>,
    action: &str,
    rule: &str,
) -> Result<HttpResponse, ApiError> {
    if let Some(message) = changed {
        tracing::info!(message_id = id, action, "message changed");
        return Ok(HttpResponse::Ok().json(message));
    }
    match state
        .db(move |pool| async move { queue::get(&pool, id).await })
        .await?
    {
        None => Err(ApiError::NotFound(id)),
        Some(current) => Err(ApiError::conflict(action, &current, rule)),
    }
}
