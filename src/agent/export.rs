//! `GET /api/v1/messages/export.csv`: the list's filters, every matching row, streamed. The
//! header and the cells come from [`Message`]'s serde derive, as its JSON does.
//!
//! At most [`MAX_EXPORTS`] run at once on an instance, [`MAX_EXPORTS_PER_AGENT`] per agent;
//! beyond that the answer is 429. The rows are read page by page with the list's keyset query,
//! each page a short statement:
//! an export of any size and any reading speed stays within the statement timeout and holds a
//! pooled connection only while a page is read. A page that fails ends the download with an
//! error (the connection is cut before the chunked body's end), never with a clean end; so
//! does a page that would follow the agent's disabling or key change (checked before each page
//! after the first).

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};

use super::auth::Agent;
use super::error::{ApiError, ApiErrorBody};
use super::filter::ListParams;
use crate::domain::AgentName;
use crate::limits::{Slot, Slots, SlotsFull};
use crate::store::listing::{Filter, Position};
use crate::store::{Store, StoreError};
use crate::wire::Message;

/// Rows read (and sent as one chunk) at a time.
const PAGE_ROWS: i64 = 1000;

/// CSV of every message matching the filters, in list order, streamed.
#[utoipa::path(get, path = "/api/v1/messages/export.csv", tag = "agent", params(ListParams),
    security(("agent_key" = [])),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 429, description = "Too many failed keys from this client, or as many exports as allowed are running",
         body = ApiErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, body = ApiErrorBody)))]
pub async fn export(
    agent: Agent,
    params: web::Query<ListParams>,
    store: web::Data<Store>,
    slots: web::Data<ExportSlots>,
) -> Result<HttpResponse, ApiError> {
    let cells = if params.raw()? {
        Cells::Raw
    } else {
        Cells::SpreadsheetSafe
    };
    let slot = slots.take(&agent.name)?;
    let pages = Pages {
        _slot: slot,
        agent,
        store: Store::clone(&store),
        filter: params.filter()?,
        after: None,
        cells,
        header_sent: false,
        done: false,
    };
    let body = futures_util::stream::try_unfold(pages, Pages::next_chunk);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"messages.csv\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

/// Where an export is: the header sent or not, the last row sent, the end reached; and the
/// slot it holds until it ends or its reader leaves.
struct Pages {
    _slot: Slot,
    agent: Agent,
    store: Store,
    filter: Filter,
    after: Option<Position>,
    cells: Cells,
    header_sent: bool,
    done: bool,
}

impl Pages {
    /// The next chunk of CSV (the header with the first page), or `None` after the last row.
    async fn next_chunk(mut self) -> Result<Option<(Bytes, Pages)>, Cut> {
        if self.done {
            return Ok(None);
        }
        let mut chunk = Vec::new();
        if !self.header_sent {
            self.header_sent = true;
            chunk.extend_from_slice(&csv_line(&header(), self.cells));
        } else if !self
            .store
            .agent_key_is_current(&self.agent.name, &self.agent.key_id)
            .await?
        {
            tracing::info!("CSV export cut off: the agent's key no longer works");
            return Err(Cut::KeyRevoked);
        }
        let page = self
            .store
            .list(self.filter.clone(), self.after, PAGE_ROWS)
            .await;
        let rows = page.inspect_err(|e| {
            tracing::error!(error = ?e, "CSV export cut off by a database error");
        })?;
        self.done = (rows.len() as i64) < PAGE_ROWS;
        self.after = rows.last().map(Position::of).or(self.after);
        for row in rows {
            chunk.extend_from_slice(&csv_line(&cells(&Message::from(row)), self.cells));
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some((Bytes::from(chunk), self)))
    }
}

/// Why an export ended before its last row.
#[derive(Debug, thiserror::Error)]
enum Cut {
    #[error("the export's database read failed")]
    Database(#[from] StoreError),
    #[error("the agent was disabled or its key replaced")]
    KeyRevoked,
}

/// Exports running at once on this instance: each holds a database connection while it reads
/// a page, so a bounded number keeps most of the pool for visitors and other agents.
pub const MAX_EXPORTS: usize = 4;
/// Exports one agent may run at once.
pub const MAX_EXPORTS_PER_AGENT: usize = 2;
/// What a refused export is told to wait, in seconds.
const RETRY_AFTER_SECS: u64 = 5;

/// The export slots of this instance.
#[derive(Default)]
pub struct ExportSlots(Slots);

impl ExportSlots {
    /// A slot for `agent`, or the 429 to answer.
    fn take(&self, agent: &AgentName) -> Result<Slot, ApiError> {
        let reason = match self
            .0
            .take(agent.as_str(), MAX_EXPORTS_PER_AGENT, MAX_EXPORTS)
        {
            Ok(slot) => return Ok(slot),
            Err(SlotsFull::Holder) => {
                "this agent already runs as many exports as it may; wait for one to finish"
            }
            Err(SlotsFull::All) => {
                "as many exports as this service runs at once are running; try again shortly"
            }
        };
        Err(ApiError::TooManyRequests {
            reason,
            retry_after: RETRY_AFTER_SECS,
        })
    }
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

/// How cells are written: as they are (`raw=true`, for machine imports), or safe to open in a
/// spreadsheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cells {
    Raw,
    SpreadsheetSafe,
}

/// One CSV record, every field quoted (RFC 4180), neutralised unless raw.
fn csv_line(cells: &csv::StringRecord, mode: Cells) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing into memory cannot fail.
    let _ = match mode {
        Cells::Raw => writer.write_record(cells),
        Cells::SpreadsheetSafe => writer.write_record(cells.iter().map(neutralise)),
    };
    writer.into_inner().unwrap_or_default()
}

/// Spreadsheets run text that starts with `=`, `+`, `-`, `@` (or a tab or CR before them) as a
/// formula: at the start of a cell, and at the start of each part of it after a `,` or `;` when
/// the file is opened with that list separator. An apostrophe before each such start makes it
/// text.
fn neutralise(cell: &str) -> String {
    fn starts_formula(rest: &str) -> bool {
        matches!(
            rest.chars().next(),
            Some('=' | '+' | '-' | '@' | '\t' | '\r')
        )
    }
    let mut out = String::with_capacity(cell.len() + 2);
    if starts_formula(cell) {
        out.push('\'');
    }
    for (i, c) in cell.char_indices() {
        out.push(c);
        if matches!(c, ',' | ';') && starts_formula(&cell[i + 1..]) {
            out.push('\'');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cells: &[&str], mode: Cells) -> String {
        String::from_utf8(csv_line(&csv::StringRecord::from(cells.to_vec()), mode)).unwrap()
    }

    #[test]
    fn every_field_is_quoted_and_formulas_neutralised() {
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
            line(&cells, Cells::SpreadsheetSafe),
            "\"plain\",\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"'=1+1\",\"'+1 555 0107\",\"'-2\",\"'@SUM(A1)\",\"'\t=x\",\"\"\r\n"
        );
    }

    #[test]
    fn parts_after_a_separator_are_neutralised_too() {
        assert_eq!(neutralise(";=1+1"), ";'=1+1");
        assert_eq!(neutralise("a,=1;@x;-2"), "a,'=1;'@x;'-2");
        assert_eq!(neutralise("=a;+b"), "'=a;'+b");
        // A separator not followed by a formula character is left alone.
        assert_eq!(
            neutralise("call me; after 5, please"),
            "call me; after 5, please"
        );
        assert_eq!(neutralise("ünïcödé;=x"), "ünïcödé;'=x");
    }

    #[test]
    fn raw_cells_are_exact() {
        assert_eq!(
            line(&["+1 555 0107", ";=1+1", "plain"], Cells::Raw),
            "\"+1 555 0107\",\";=1+1\",\"plain\"\r\n"
        );
    }
}
