//! List, read and change messages.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::Agent;
use super::cursor;
use super::error::ApiError;
use crate::domain::{ChannelId, Outcome, PhoneNo, Status, is_forbidden_control};
use crate::state::AppState;
use crate::store::queue::{self, Filter, Message, Position};
use crate::store::{self, within_deadline};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;
pub const MAX_NOTE_CHARS: usize = 2000;

/// Query parameters of the list and the export, as received.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    status: Option<String>,
    channel_id: Option<String>,
    phone_no: Option<String>,
    agent: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
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
            agent: given(&self.agent).map(str::to_owned),
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    items: Vec<Message>,
    next_cursor: Option<String>,
}

pub async fn list(
    _agent: Agent,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = params.filter()?;
    let limit = params.limit()?;
    let after = params.after()?;
    // One extra row tells whether another page follows.
    let mut items = within_deadline(queue::list(&state.pool, &filter, after, limit + 1)).await?;
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

pub async fn get(
    _agent: Agent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&path)?;
    let message = within_deadline(queue::get(&state.pool, id))
        .await?
        .ok_or(ApiError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(message))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimNextParams {
    channel_id: Option<String>,
}

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
    match within_deadline(queue::claim_next(&state.pool, &agent.name, channel)).await? {
        Some(message) => Ok(HttpResponse::Ok().json(message)),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

pub async fn claim(
    agent: Agent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&path)?;
    let changed = within_deadline(queue::claim(&state.pool, id, &agent.name)).await?;
    answer(
        &state,
        id,
        changed,
        "claim",
        "only pending messages can be claimed",
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct AssignBody {
    agent: Option<String>,
}

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
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest("agent is required: the name of the agent to assign to".to_owned())
        })?;
    if !within_deadline(store::agents::exists(&state.pool, to)).await? {
        return Err(ApiError::BadRequest(format!("no agent is named {to:?}")));
    }
    let changed = within_deadline(queue::assign(&state.pool, id, &agent.name, to)).await?;
    answer(
        &state,
        id,
        changed,
        "assign",
        "processed messages cannot be reassigned",
    )
    .await
}

pub async fn release(
    agent: Agent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = message_id(&path)?;
    let changed =
        within_deadline(queue::release(&state.pool, id, &agent.name, agent.is_admin)).await?;
    answer(
        &state,
        id,
        changed,
        "release",
        "only its assignee or an admin can release an assigned message",
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct ProcessBody {
    outcome: Option<String>,
    note: Option<String>,
}

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
    let changed = within_deadline(queue::process(
        &state.pool,
        id,
        &agent.name,
        agent.is_admin,
        outcome,
        note,
    ))
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
    match within_deadline(queue::get(&state.pool, id)).await? {
        None => Err(ApiError::NotFound(id)),
        Some(current) => Err(ApiError::conflict(action, &current, rule)),
    }
}
