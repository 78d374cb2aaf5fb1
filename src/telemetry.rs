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
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::settings::LogFormat;

/// Response header carrying the request id, for matching a complaint with a log line.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    init_with_default(format, "info,sqlx=warn,actix_server=warn");
}

/// Like [`init`], with another default filter (tests log warnings only).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let directives = std::env::var("RUST_LOG").ok();
    let filter = level_filter(directives.as_deref(), default_filter);
    // Colours only on a terminal: log files and collectors get plain text.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => registry
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Text => registry.with(layer).try_init(),
    };
}

type BoxedFilter = Box<dyn Layer<Registry> + Send + Sync>;

/// The filter for `directives` (`RUST_LOG`; `default` when unset or not understood). Levels
/// per target (`info,sqlx=warn`) are decided once per call site ([`Targets`]); directives that
/// [`EnvFilter`] alone understands (span names, field values) are taken by it, which also
/// keeps track of every span entered and left, measurably slower at full intake.
fn level_filter(directives: Option<&str>, default: &str) -> BoxedFilter {
    if let Some(directives) = directives {
        if let Ok(targets) = directives.parse::<Targets>() {
            return Box::new(targets);
        }
        if let Ok(filter) = EnvFilter::try_new(directives) {
            return Box::new(filter);
        }
    }
    match default.parse::<Targets>() {
        Ok(targets) => Box::new(targets),
        Err(_) => Box::new(EnvFilter::new(default)),
    }
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
    fn log_levels_per_target_and_span_directives_are_both_understood() {
        use tracing::Level;
        use tracing::level_filters::LevelFilter;
        let targets = level_filter(Some("info,sqlx=warn"), "error");
        assert_eq!(targets.max_level_hint(), Some(LevelFilter::INFO));
        // Span directives are EnvFilter's alone; an unreadable RUST_LOG falls back to the default.
        let spans = level_filter(Some("warn,[request]=debug"), "error");
        assert_eq!(spans.max_level_hint(), Some(LevelFilter::DEBUG));
        let fallback = level_filter(Some("=nonsense=["), "error");
        assert_eq!(fallback.max_level_hint(), Some(LevelFilter::ERROR));
        let unset = level_filter(None, "trace,sqlx=warn");
        assert_eq!(unset.max_level_hint(), Some(Level::TRACE.into()));
    }

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
