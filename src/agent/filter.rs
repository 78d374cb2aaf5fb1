//! The query parameters of the list and the CSV export, parsed into the store's [`Filter`];
//! and the few that other calls share with them.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::cursor;
use super::error::ApiError;
use crate::domain::{AgentName, ChannelId, DeliveryStatus, FieldError, PhoneNo, Status};
use crate::store::listing::{Filter, Position};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

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
    /// `true`: only pending messages that are due now (dueAt not in the future); `false`:
    /// every other message.
    #[param(value_type = Option<bool>)]
    due: Option<String>,
    /// `true`: only messages that are overdue (not processed, overdueAt passed); `false`:
    /// every other message.
    #[param(value_type = Option<bool>)]
    overdue: Option<String>,
    /// Page size, 1-500 (default 50); not used by the export.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// nextCursor of the previous page; not used by the export.
    cursor: Option<String>,
    /// Export only: `true` writes every text exactly as stored, for machine imports; by
    /// default cells that a spreadsheet would run as a formula get a leading apostrophe.
    #[param(value_type = Option<bool>)]
    raw: Option<String>,
}

impl ListParams {
    /// The filters, parsed; empty parameters count as absent.
    pub fn filter(&self) -> Result<Filter, ApiError> {
        Ok(Filter {
            status: parse(&self.status, Status::parse)?,
            channel_id: parse(&self.channel_id, ChannelId::parse)?,
            phone: parse(&self.phone_no, PhoneNo::parse)?,
            agent: parse(&self.agent, AgentName::parse)?,
            from: parse(&self.from, |t| parse_time("from", t))?,
            to: parse(&self.to, |t| parse_time("to", t))?,
            due: parse(&self.due, |b| parse_bool("due", b))?,
            overdue: parse(&self.overdue, |b| parse_bool("overdue", b))?,
        })
    }

    /// The page size.
    pub fn limit(&self) -> Result<i64, ApiError> {
        limit_param(&self.limit, DEFAULT_LIMIT)
    }

    /// Whether the export writes texts exactly as stored.
    pub fn raw(&self) -> Result<bool, ApiError> {
        Ok(parse(&self.raw, |b| parse_bool("raw", b))?.unwrap_or(false))
    }

    /// Where the page starts: after the previous page's last message.
    pub fn after(&self) -> Result<Option<Position>, ApiError> {
        match given(&self.cursor) {
            None => Ok(None),
            Some(raw) => cursor::decode(raw).map(Some).ok_or_else(|| {
                ApiError::BadRequest("cursor is not one this service gave out".to_owned())
            }),
        }
    }
}

/// A `channelId` parameter (claim-next, the queue counts); empty counts as absent.
pub fn channel_param(value: &Option<String>) -> Result<Option<ChannelId>, ApiError> {
    parse(value, ChannelId::parse)
}

/// A `limit` parameter: 1 to [`MAX_LIMIT`], `default` when absent or empty.
pub fn limit_param(value: &Option<String>, default: i64) -> Result<i64, ApiError> {
    match given(value) {
        None => Ok(default),
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

/// A `status` parameter of a webhook endpoint's deliveries; empty counts as absent.
pub fn delivery_status_param(value: &Option<String>) -> Result<Option<DeliveryStatus>, ApiError> {
    parse(value, DeliveryStatus::parse)
}

/// A parameter's value, trimmed; empty counts as absent.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse<T>(
    value: &Option<String>,
    parser: impl FnOnce(&str) -> Result<T, FieldError>,
) -> Result<Option<T>, ApiError> {
    given(value)
        .map(parser)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn parse_bool(field: &str, raw: &str) -> Result<bool, FieldError> {
    match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(FieldError::new(field, "must be true or false")),
    }
}

fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            FieldError::new(
                field,
                "must be an RFC 3339 time such as 2026-11-26T09:00:00Z",
            )
        })
}
