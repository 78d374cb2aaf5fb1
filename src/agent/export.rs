//! `GET /api/v1/messages/export.csv`: the list's filters, every matching row, streamed.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};

use super::auth::Agent;
use super::error::{ApiError, ApiErrorBody};
use super::messages::ListParams;
use crate::state::AppState;
use crate::store::queue::{self, Message};

/// Rows are gathered into chunks of about this size before being sent.
const CHUNK_BYTES: usize = 32 * 1024;

/// CSV of every message matching the filters, in list order, streamed.
#[utoipa::path(get, path = "/api/v1/messages/export.csv", tag = "agent", params(ListParams),
    security(("agent_key" = [])),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 503, body = ApiErrorBody)))]
pub async fn export(
    _agent: Agent,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = params.filter()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(256);
    let pool = state.pool.clone();
    // The query runs (on the database runtime) while the response is sent; a slow reader slows
    // the query through the bounded channel.
    state.db_runtime.spawn(async move {
        if let Err(e) = queue::export(&pool, &filter, tx).await {
            tracing::error!(error = %e, "CSV export stopped by a database error");
        }
    });

    let mut header_sent = false;
    let body = futures_util::stream::poll_fn(move |cx| {
        let mut buf = Vec::with_capacity(CHUNK_BYTES);
        if !header_sent {
            header_sent = true;
            buf.extend_from_slice(csv_line(&Message::FIELDS.map(str::to_owned)).as_bytes());
        }
        loop {
            match rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(message)) => {
                    buf.extend_from_slice(csv_line(&row(&message)).as_bytes());
                    if buf.len() >= CHUNK_BYTES {
                        return std::task::Poll::Ready(Some(Ok::<_, Infallible>(Bytes::from(buf))));
                    }
                }
                std::task::Poll::Ready(None) if buf.is_empty() => {
                    return std::task::Poll::Ready(None);
                }
                std::task::Poll::Ready(None) => {
                    return std::task::Poll::Ready(Some(Ok(Bytes::from(buf))));
                }
                std::task::Poll::Pending if buf.is_empty() => return std::task::Poll::Pending,
                std::task::Poll::Pending => {
                    return std::task::Poll::Ready(Some(Ok(Bytes::from(buf))));
                }
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"messages.csv\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// A message's cells, in [`Message::FIELDS`] order.
fn row(m: &Message) -> [String; 15] {
    [
        m.id.to_string(),
        m.channel_id.to_string(),
        m.user_id.clone(),
        m.user_name.clone(),
        m.phone_no.clone(),
        m.leave_message.clone(),
        m.client_ip.clone(),
        m.user_agent.clone().unwrap_or_default(),
        time(Some(m.received_at)),
        m.status.clone(),
        m.assigned_to.clone().unwrap_or_default(),
        time(m.assigned_at),
        time(m.processed_at),
        m.outcome.clone().unwrap_or_default(),
        m.note.clone().unwrap_or_default(),
    ]
}

/// One CSV record (RFC 4180 quoting), with formula-like cells neutralised.
fn csv_line(cells: &[String]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing into memory cannot fail.
    let _ = writer.write_record(cells.iter().map(|c| neutralise(c).into_owned()));
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// Spreadsheets run cells that start with `=`, `+`, `-`, `@` (or a tab or CR before them) as
/// formulas; a leading apostrophe makes them text.
fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_neutralising() {
        let cells = [
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "=1+1",
            "+1 555 0107",
            "-2",
            "@SUM(A1)",
            "\t=x",
            "",
        ]
        .map(str::to_owned);
        assert_eq!(
            csv_line(&cells),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",'=1+1,'+1 555 0107,'-2,'@SUM(A1),'\t=x,\r\n"
        );
    }
}
