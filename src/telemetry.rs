//! Logging: one line per request with a request id; never a phone number, message text,
//! token or API key (request bodies, query strings and cookies are not logged).
//!
//! What a request did (the message it stored or changed) is recorded on the request's span by
//! its handler, and so appears on that one line: a second line per request would double what
//! logging costs at full intake (`docs/performance.md`).

use std::io::IsTerminal;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Response header carrying the request id, for matching a complaint with a log line.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    init_with_default(format, "info,sqlx=warn,actix_server=warn");
}

/// Like [`init`], with another default filter (tests log warnings only).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The request's method as a label from a fixed set: a method is any token the client likes,
/// and each distinct label is a metric series held in memory and rendered at every scrape.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A request id: random, from the thread's own generator (no system call per request).
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .simple()
        .to_string()
}

/// Middleware: a span per request with its id, route and method; one line when it ends.
///
/// Handlers record on the span (`tracing::Span::current().record(..)`) what the line should
/// say they did: `channel` and `message_id` (a message stored, or changed by an agent),
/// `resubmission` (a message already stored), `action` (what an agent did to a message).
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let request_id = new_request_id();
    // The route pattern, not the path: paths and queries may carry personal data.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let method = method_label(req.method());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = method,
        route = %route,
        channel = tracing::field::Empty,
        message_id = tracing::field::Empty,
        resubmission = tracing::field::Empty,
        action = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let elapsed_ms = elapsed * 1000.0;
    let _entered = span.enter();
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            tracing::info!(status, elapsed_ms, "request finished");
            crate::counters::request(&route, method, status, elapsed);
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
            }
            Ok(response)
        }
        Err(e) => {
            tracing::warn!(elapsed_ms, error = %e, "request failed");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn methods_outside_the_fixed_set_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        assert_eq!(method_label(&Method::CONNECT), "other");
        let invented = Method::from_bytes(b"FROBNICATEXYZZYFROBNICATE").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
