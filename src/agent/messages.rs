//! List, read and change messages. Each handler parses its input into domain values, asks the
//! store for one change, and answers with [`changed`].

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Agent};
use super::body::TimedJson;
use super::cursor;
use super::error::{ApiError, ApiErrorBody};
use super::filter::{ListParams, channel_param};
use crate::domain::{AgentName, AttemptResult, MessageId, Note, Outcome};
use crate::store::listing::Position;
use crate::store::{MessageRow, Store};
use crate::wire::Message;

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
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn list(
    _agent: Agent,
    params: web::Query<ListParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let (filter, limit, after) = (params.filter()?, params.limit()?, params.after()?);
    // One extra row tells whether another page follows.
    let mut rows = store.list(filter, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|last| cursor::encode(Position::of(last)));
    let items = rows.into_iter().map(Message::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

/// One message.
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn get(
    _agent: Agent,
    id: web::Path<MessageId>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let message = store.message(id).await?.ok_or(ApiError::NotFound(id))?;
    Ok(HttpResponse::Ok().json(Message::from(message)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ClaimNextParams {
    /// Only this channel's pending messages.
    #[param(format = Uuid)]
    channel_id: Option<String>,
}

/// Assign the pending message that has been due longest to the caller (earliest dueAt not in
/// the future, then oldest receivedAt, then id); 204 when none is due.
#[utoipa::path(post, path = "/api/v1/messages/claim-next", tag = "agent", params(ClaimNextParams),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 204, description = "No pending message is due"),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn claim_next(
    agent: Agent,
    params: web::Query<ClaimNextParams>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    match store
        .claim_next(&agent.name, channel_param(&params.channel_id)?)
        .await?
    {
        Some(message) => Ok(HttpResponse::Ok().json(Message::from(message))),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

/// pending → assigned to the caller.
#[utoipa::path(post, path = "/api/v1/messages/{id}/claim", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn claim(
    agent: Agent,
    id: web::Path<MessageId>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let change = store.claim(id, &agent.name).await?;
    changed(
        &store,
        id,
        change,
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
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody), (status = 403, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
        (status = 408, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn assign(
    Admin(agent): Admin,
    id: web::Path<String>,
    req: HttpRequest,
    body: web::Payload,
    store: web::Data<Store>,
) -> Result<HttpResponse, actix_web::Error> {
    // Authorisation before validation: actix extracts a handler's parameters together, and
    // whichever fails first answers, so a parsed id or body could answer 400 before (or
    // after, depending on timing) the admin check's 403. The id and the body are parsed
    // here, once the caller is known to be an admin.
    let id = MessageId::parse(&id).map_err(ApiError::from)?;
    let TimedJson(body) =
        TimedJson::<AssignBody>::from_request(&req, &mut body.into_inner()).await?;
    Ok(assign_to(&agent, id, body, &store).await?)
}

async fn assign_to(
    agent: &Agent,
    id: MessageId,
    body: AssignBody,
    store: &Store,
) -> Result<HttpResponse, ApiError> {
    let to = body.agent.as_deref().ok_or_else(|| {
        ApiError::BadRequest("agent is required: the name of the agent to assign to".to_owned())
    })?;
    let to = AgentName::parse(to)?;
    match store.agent_enabled(&to).await? {
        Some(true) => {}
        Some(false) => {
            return Err(ApiError::BadRequest(format!(
                "agent {:?} is disabled",
                to.as_str()
            )));
        }
        None => {
            return Err(ApiError::BadRequest(format!(
                "no agent is named {:?}",
                to.as_str()
            )));
        }
    }
    let change = store.assign(id, &agent.name, &to).await?;
    changed(
        store,
        id,
        change,
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
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn release(
    agent: Agent,
    id: web::Path<MessageId>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let change = store.release(id, &agent.actor()).await?;
    let rule = "only its assignee or an admin can release an assigned message";
    changed(&store, id, change, "release", rule).await
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
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 408, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn process(
    agent: Agent,
    id: web::Path<MessageId>,
    TimedJson(body): TimedJson<ProcessBody>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let outcome = body.outcome.as_deref().ok_or_else(|| {
        ApiError::BadRequest(
            "outcome is required: called_back, no_answer, wrong_number or spam".to_owned(),
        )
    })?;
    let outcome = Outcome::parse(outcome)?;
    let note = Note::parse_optional(body.note.as_deref())?;
    let change = store.process(id, &agent.actor(), outcome, note).await?;
    let rule = "only an assigned message can be processed, by its assignee or an admin";
    changed(&store, id, change, "process", rule).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AttemptBody {
    /// What came of the call: reached, no_answer, busy, voicemail, wrong_number or spam.
    #[schema(required = true, value_type = String,
             pattern = "^(reached|no_answer|busy|voicemail|wrong_number|spam)$")]
    result: Option<String>,
    /// Optional, up to 2000 characters.
    #[schema(max_length = 2000)]
    note: Option<String>,
}

/// Record a call attempt on an assigned message, by its assignee or an admin. `reached` →
/// processed (called_back); `wrong_number`, `spam` → processed with that outcome;
/// `no_answer`, `busy`, `voicemail` → pending again, unassigned, due the channel's retry
/// minutes from now, unless it was the last of the channel's maxAttempts: then processed
/// (no_answer).
#[utoipa::path(post, path = "/api/v1/messages/{id}/attempts", tag = "agent",
    params(("id" = i64, Path, minimum = 1, description = "Message id")),
    request_body = AttemptBody,
    security(("agent_key" = [])),
    responses(
        (status = 200, body = Message), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 429, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 408, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn attempt(
    agent: Agent,
    id: web::Path<MessageId>,
    TimedJson(body): TimedJson<AttemptBody>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let result = body.result.as_deref().ok_or_else(|| {
        ApiError::BadRequest(
            "result is required: reached, no_answer, busy, voicemail, wrong_number or spam"
                .to_owned(),
        )
    })?;
    let result = AttemptResult::parse(result)?;
    let note = Note::parse_optional(body.note.as_deref())?;
    let change = store
        .record_attempt(id, &agent.actor(), result, note)
        .await?;
    let rule = "attempts are recorded on an assigned message, by its assignee or an admin";
    changed(&store, id, change, "record an attempt on", rule).await
}

/// 200 with the changed message; otherwise 404 if there is no such message, else 409 naming
/// its current status and assignee.
async fn changed(
    store: &Store,
    id: MessageId,
    change: Option<MessageRow>,
    action: &str,
    rule: &str,
) -> Result<HttpResponse, ApiError> {
    if let Some(message) = change {
        // Said by the request's one log line (see `telemetry`).
        let span = tracing::Span::current();
        span.record("message_id", id.get());
        span.record("action", action);
        return Ok(HttpResponse::Ok().json(Message::from(message)));
    }
    match store.message(id).await? {
        None => Err(ApiError::NotFound(id)),
        Some(current) => Err(ApiError::conflict(action, &current, rule)),
    }
}
