//! The admin API for webhooks (CONTRACT §7.1): endpoints and their deliveries, under the same
//! rules as `leavemsg webhook …` (the parsing is the domain's, the data rules the store's).
//! Admins only: every handler takes [`Admin`] and reads its path, query and body after that
//! check, so any other agent gets 403 whatever the request holds.

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{Array, Object, ObjectBuilder, Type};
use uuid::Uuid;

use super::auth::Admin;
use super::body::TimedJson;
use super::error::{ApiError, ApiErrorBody};
use super::filter::{delivery_status_param, limit_param};
use crate::credentials::WebhookSecret;
use crate::domain::{ChannelId, EVENT_TYPES, EndpointUrl, EventId, EventTypes};
use crate::store::Store;
use crate::store::webhooks::{DeliveryRow, EndpointRow, NewEndpoint, Redelivery, Subscribed};

pub const PATH: &str = "/api/v1/webhooks";
/// Deliveries listed when the call does not say how many.
pub const DEFAULT_DELIVERIES: i64 = 100;

/// A webhook endpoint. Its signing secret is never shown again after it was added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    id: Uuid,
    /// Where events are POSTed.
    url: String,
    /// Only this channel's events; null: every channel's.
    #[schema(required = true)]
    channel_id: Option<Uuid>,
    /// Only these event types; empty: every type.
    #[schema(schema_with = event_list)]
    events: Vec<String>,
    /// When it was added: it gets the events committed from then on.
    created_at: DateTime<Utc>,
    /// Deliveries still to be made or retried.
    #[schema(minimum = 0)]
    pending: i64,
    /// Deliveries that gave up (see `deliveries?status=failed` and `redeliver`).
    #[schema(minimum = 0)]
    failed: i64,
}

impl From<EndpointRow> for WebhookEndpoint {
    fn from(row: EndpointRow) -> Self {
        WebhookEndpoint {
            id: row.id,
            url: row.url,
            channel_id: row.channel_id,
            events: row.events,
            created_at: row.created_at,
            pending: row.pending,
            failed: row.failed,
        }
    }
}

/// Every endpoint, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoints {
    items: Vec<WebhookEndpoint>,
}

/// A new endpoint, with its signing secret: the only time the secret is shown.
// No `Debug`: nothing can log it by accident.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AddedWebhookEndpoint {
    #[serde(flatten)]
    endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_` and a base64 key): keep it; it is not shown again.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]+={0,2}$")]
    secret: String,
}

/// An endpoint to subscribe.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewWebhook {
    /// Where events are POSTed: an http:// or https:// address with a host, at most 2000
    /// characters.
    #[schema(required = true, value_type = String, format = "uri", min_length = 1, max_length = 2000)]
    url: Option<Value>,
    /// Only this channel's events (its Configuration ID); absent or null: every channel's.
    #[schema(value_type = Option<String>, format = Uuid)]
    channel_id: Option<Value>,
    /// Only these event types; absent, null or empty: every type.
    #[schema(schema_with = nullable_event_list)]
    events: Option<Value>,
}

/// One event to one endpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The event's `webhook-id` (`evt_` and 32 hex digits), the same on every try.
    #[schema(pattern = "^evt_[0-9a-f]{32}$")]
    event_id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = event_type)]
    event_type: String,
    /// The message the event is about.
    message_id: i64,
    /// When the change happened.
    at: DateTime<Utc>,
    #[schema(pattern = "^(pending|delivered|failed)$")]
    status: String,
    /// Tries so far (a try under way counts; 0 again after a redelivery).
    #[schema(minimum = 0)]
    tries: i32,
    /// What the last failed try got: an HTTP status, a timeout, a refused connection.
    #[schema(required = true)]
    last_error: Option<String>,
    /// While pending: when it is tried (again). Null once delivered or failed.
    #[schema(required = true)]
    next_at: Option<DateTime<Utc>>,
    /// When it was delivered or given up.
    #[schema(required = true)]
    done_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(row: DeliveryRow) -> Self {
        let pending = row.status == "pending";
        WebhookDelivery {
            event_id: EventId::from_uuid(row.uid).to_string(),
            event_type: row.event_type,
            message_id: row.message_id,
            at: row.at,
            status: row.status,
            tries: row.tries,
            last_error: row.last_error,
            next_at: pending.then_some(row.next_at),
            done_at: row.done_at,
        }
    }
}

/// An endpoint's deliveries, newest event first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookDeliveries {
    items: Vec<WebhookDelivery>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only deliveries in this state: pending, delivered or failed; default: all.
    #[param(pattern = "^(pending|delivered|failed)$")]
    status: Option<String>,
    /// How many (the newest), 1-500; default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

fn event_type() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(EVENT_TYPES))
        .description(Some("The event's type."))
        .build()
}

fn event_list() -> Array {
    Array::new(event_type())
}

fn nullable_event_list() -> Array {
    let mut list = Array::new_nullable(event_type());
    list.description = Some("Only these event types; absent, null or empty: every type.".into());
    list
}

/// Admins only: every webhook endpoint, oldest first, with its pending and failed
/// deliveries; never a secret.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    security(("agent_key" = [])),
    responses(
        (status = 200, body = WebhookEndpoints), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody), (status = 429, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn list(_admin: Admin, store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let items = store
        .webhooks()
        .await?
        .into_iter()
        .map(WebhookEndpoint::from)
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WebhookEndpoints { items }))
}

/// Admins only: subscribe an endpoint to every channel's events or one channel's, of every
/// type or the types named. The answer holds its signing secret: the only time it is shown.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "add_webhook",
    request_body = NewWebhook,
    security(("agent_key" = [])),
    responses(
        (status = 201, body = AddedWebhookEndpoint), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody),
        (status = 408, body = ApiErrorBody), (status = 429, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn add(
    Admin(agent): Admin,
    req: HttpRequest,
    body: web::Payload,
    store: web::Data<Store>,
) -> Result<HttpResponse, actix_web::Error> {
    let TimedJson(body) =
        TimedJson::<NewWebhook>::from_request(&req, &mut body.into_inner()).await?;
    let (url, channel, events) = parse_new(&body)?;
    let secret = WebhookSecret::generate();
    let added = store
        .create_webhook(&NewEndpoint {
            url: &url,
            channel,
            events: &events,
            secret: &secret,
        })
        .await
        .map_err(ApiError::from)?;
    let endpoint = match added {
        Subscribed::Added(endpoint) => endpoint,
        Subscribed::NoSuchChannel => {
            let channel = channel.map(|c| c.to_string()).unwrap_or_default();
            return Err(ApiError::BadRequest(format!(
                "channelId: no channel has the Configuration ID {channel}"
            ))
            .into());
        }
    };
    tracing::info!(endpoint = %endpoint.id, admin = agent.name.as_str(), "webhook endpoint added");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AddedWebhookEndpoint {
            endpoint: endpoint.into(),
            secret: secret.expose().to_owned(),
        }))
}

/// The body's fields, parsed as `webhook add` parses its flags; each refusal names its field.
fn parse_new(body: &NewWebhook) -> Result<(EndpointUrl, Option<ChannelId>, EventTypes), ApiError> {
    let url = body.url.as_ref().ok_or_else(|| {
        ApiError::BadRequest(
            "url is required: the http:// or https:// address to POST events to".to_owned(),
        )
    })?;
    let url = EndpointUrl::parse(string_field("url", url)?)?;
    let channel = body
        .channel_id
        .as_ref()
        .map(|c| string_field("channelId", c).and_then(|c| Ok(ChannelId::parse(c)?)))
        .transpose()?;
    let events = match &body.events {
        None => EventTypes::default(),
        Some(list) => {
            let names = list
                .as_array()
                .and_then(|items| items.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "events must be a list of event type names (strings)".to_owned(),
                    )
                })?;
            EventTypes::parse("events", &names)?
        }
    };
    Ok((url, channel, events))
}

fn string_field<'a>(field: &str, value: &'a Value) -> Result<&'a str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| ApiError::BadRequest(format!("{field} must be a string")))
}

/// Admins only: unsubscribe an endpoint; its deliveries still to be made are dropped.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", operation_id = "remove_webhook",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    security(("agent_key" = [])),
    responses(
        (status = 204, description = "Removed"), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody), (status = 429, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn remove(
    Admin(agent): Admin,
    id: web::Path<String>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(&id)?;
    if !store.remove_webhook(id).await? {
        return Err(no_such_endpoint(id));
    }
    tracing::info!(endpoint = %id, admin = agent.name.as_str(), "webhook endpoint removed");
    Ok(HttpResponse::NoContent().finish())
}

/// Admins only: an endpoint's deliveries, newest event first, of one status or all.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    params(("id" = Uuid, Path, description = "The endpoint's id"), DeliveryParams),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = WebhookDeliveries), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody), (status = 429, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn deliveries(
    _admin: Admin,
    id: web::Path<String>,
    req: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let id = endpoint_id(&id)?;
    let params = web::Query::<DeliveryParams>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("query parameters: {e}")))?;
    let status = delivery_status_param(&params.status)?;
    let limit = limit_param(&params.limit, DEFAULT_DELIVERIES)?;
    let rows = store
        .deliveries(id, status, limit)
        .await?
        .ok_or_else(|| no_such_endpoint(id))?;
    let items = rows.into_iter().map(WebhookDelivery::from).collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WebhookDeliveries { items }))
}

/// Admins only: queue one delivered or failed event to this endpoint again, with a full
/// maximum age from now (as `leavemsg webhook redeliver EVENT_ID --endpoint ID`); 409 while
/// it is still pending.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{eventId}/redeliver",
    tag = "webhooks", operation_id = "redeliver_webhook_delivery",
    params(
        ("id" = Uuid, Path, description = "The endpoint's id"),
        ("eventId" = String, Path, pattern = "^evt_[0-9a-fA-F]{32}$",
         description = "The event's webhook-id: evt_ and 32 hex digits")),
    security(("agent_key" = [])),
    responses(
        (status = 200, body = WebhookDelivery), (status = 400, body = ApiErrorBody),
        (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody),
        (status = 429, body = ApiErrorBody), (status = 503, body = ApiErrorBody)))]
pub async fn redeliver(
    Admin(agent): Admin,
    path: web::Path<(String, String)>,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let (id, event) = path.into_inner();
    let id = endpoint_id(&id)?;
    let event = EventId::parse(&event).ok_or_else(|| {
        ApiError::BadRequest(
            "eventId must be an event's webhook-id: evt_ and 32 hex digits".to_owned(),
        )
    })?;
    match store.redeliver_one(id, event).await? {
        Redelivery::Queued(delivery) => {
            tracing::info!(endpoint = %id, event = %event, admin = agent.name.as_str(), "webhook delivery queued again");
            Ok(HttpResponse::Ok().json(WebhookDelivery::from(delivery)))
        }
        Redelivery::AlreadyPending => Err(ApiError::DeliveryPending(format!(
            "the delivery of {event} to endpoint {id} is pending: it is tried again by itself"
        ))),
        Redelivery::NoSuchDelivery => Err(ApiError::NoSuchWebhook(format!(
            "no webhook endpoint {id} with a delivery of {event}"
        ))),
    }
}

fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw.trim()).map_err(|_| {
        ApiError::BadRequest(
            "id is not a webhook endpoint id (see GET /api/v1/webhooks)".to_owned(),
        )
    })
}

fn no_such_endpoint(id: Uuid) -> ApiError {
    ApiError::NoSuchWebhook(format!("no webhook endpoint has id {id}"))
}
