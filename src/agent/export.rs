//! `GET /api/v1/messages/export.csv`: the list's filters, every matching row, streamed. The
//! header and the cells come from [`Message`]'s serde derive, as its JSON does.

use std::convert::Infallible;
use std::task::Poll;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};

use super::auth::Agent;
use super::error::{ApiError, ApiErrorBody};
use super::filter::ListParams;
use super::message::Message;
use crate::store::Store;

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
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut rows = store.export(params.filter()?);
    let mut header_sent = false;
    let body = futures_util::stream::poll_fn(move |cx| {
        let mut buf = Vec::with_capacity(CHUNK_BYTES);
        if !header_sent {
            header_sent = true;
            buf.extend_from_slice(&csv_line(&header()));
        }
        loop {
            match rows.poll_recv(cx) {
                Poll::Ready(Some(row)) => {
                    buf.extend_from_slice(&csv_line(&cells(&Message::from(row))));
                    if buf.len() >= CHUNK_BYTES {
                        return Poll::Ready(Some(Ok::<_, Infallible>(Bytes::from(buf))));
                    }
                }
                Poll::Ready(None) if buf.is_empty() => return Poll::Ready(None),
                Poll::Pending if buf.is_empty() => return Poll::Pending,
                // The end, or no row ready yet: send what is gathered.
                Poll::Ready(None) | Poll::Pending => {
                    return Poll::Ready(Some(Ok(Bytes::from(buf))));
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

/// The field names of [`Message`], as its serde derive spells them.
fn header() -> csv::StringRecord {
    let mut writer = csv::Writer::from_writer(Vec::new());
    // Serializing any message makes csv write the header row first.
    let _ = writer.serialize(Message::default());
    let bytes = writer.into_inner().unwrap_or_default();
    csv::Reader::from_reader(bytes.as_slice())
        .headers()
        .cloned()
        .unwrap_or_default()
}

/// A message's cells, in [`header`] order, as its serde derive writes them.
fn cells(message: &Message) -> csv::StringRecord {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    // Writing into memory cannot fail, nor can reading back what was just written.
    let _ = writer.serialize(message);
    let bytes = writer.into_inner().unwrap_or_default();
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice())
        .records()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// One CSV record (RFC 4180 quoting), with formula-like cells neutralised.
fn csv_line(cells: &csv::StringRecord) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing into memory cannot fail.
    let _ = writer.write_record(cells.iter().map(|cell| neutralise(cell).into_owned()));
    writer.into_inner().unwrap_or_default()
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
        ];
        assert_eq!(
            String::from_utf8(csv_line(&csv::StringRecord::from(cells.to_vec()))).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",'=1+1,'+1 555 0107,'-2,'@SUM(A1),'\t=x,\r\n"
        );
    }
}
