//! The process's metrics: counters and histograms anything may bump, and the recorder that
//! holds them (`ops::metrics` renders them at `GET /metrics`). Named `counters` so it does not shadow
//! the `metrics` crate it is built on.
//!
//! - `leavemsg_http_requests_total{route,method,status}` and
//!   `leavemsg_http_request_duration_seconds{route}` (histogram), for every request;
//! - `leavemsg_messages_stored_total`, `leavemsg_messages_deduplicated_total`;
//! - `leavemsg_webhook_deliveries_total{result}` and `leavemsg_email_deliveries_total{result}`
//!   (`delivered`, `retry`, `failed`): the outbox's tries;
//! - `leavemsg_rate_limited_total{limit="token"|"ip"}`;
//! - `leavemsg_database_failures_total{operation}` (answers of 503), one `operation` per
//!   [`DbOperation`];
//! - `leavemsg_leave_message_answers_total{result_code}` and
//!   `leavemsg_apply_token_answers_total{result_code}`: the visitor calls' answers by
//!   `resultCode` (a bad-parameter answer is HTTP 200, so the status alone hides it);
//! - `leavemsg_build_info{version}` (gauge, always 1);
//! - `leavemsg_write_batch_rows` (histogram): messages per group-commit batch;
//! - `leavemsg_db_pool_connections{state="in_use"|"idle"}`, `leavemsg_stream_clients`,
//!   `leavemsg_stream_listening` (1 while the instance LISTENs for new messages, which it does
//!   only while it has stream clients) (gauges, read at scrape time);
//! - the per-channel queue gauges and `leavemsg_queue_reads_total`, which `ops::metrics`
//!   writes itself from its own reading of the database (see `QueueGauges` there).
//!
//! Every metric is described (`# HELP`) and every counter but the per-request ones is registered
//! with each label value it can take when the recorder is installed, so `/metrics` shows them at
//! 0 from start: a rate over a counter that appears only at its first increment misses that
//! increment, and an alert cannot tell "never happened" from "not exported".
//! `leavemsg_http_requests_total` is created on demand: its labels come from requests (route
//! patterns, a fixed set of methods, statuses).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: fine below 10 ms, where a healthy intake answers.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Batch size buckets, in messages.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".to_owned()),
                LATENCY_BUCKETS,
            )
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("leavemsg_write_batch_rows".to_owned()),
                    BATCH_BUCKETS,
                )
            })
            .map_or_else(
                |_| PrometheusBuilder::new().build_recorder(),
                PrometheusBuilder::build_recorder,
            );
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        register();
        handle
    })
}

/// The operations whose database failures are counted: a fixed set, so each label value is
/// registered at start and a new one cannot be forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOperation {
    /// Any agent interface call.
    AgentInterface,
    /// applyToken reading its channel.
    ChannelLookup,
    /// applyToken storing the token it issues.
    StoreToken,
    /// A visitor call checking its token is still current.
    TokenLookup,
    /// doLeaveMessage writing the message.
    StoreMessage,
}

impl DbOperation {
    pub const ALL: [Self; 5] = [
        Self::AgentInterface,
        Self::ChannelLookup,
        Self::StoreToken,
        Self::TokenLookup,
        Self::StoreMessage,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::AgentInterface => "agent_interface",
            Self::ChannelLookup => "channel_lookup",
            Self::StoreToken => "store_token",
            Self::TokenLookup => "token_lookup",
            Self::StoreMessage => "store_message",
        }
    }
}

/// The visitor rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `LEAVEMSG_RATE_PER_TOKEN`.
    Token,
    /// `LEAVEMSG_RATE_PER_IP`.
    Ip,
}

impl Limit {
    pub const ALL: [Self; 2] = [Self::Token, Self::Ip];

    pub fn label(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Ip => "ip",
        }
    }
}

/// Every `resultCode` doLeaveMessage answers with (CONTRACT §2.2).
pub const LEAVE_MESSAGE_RESULT_CODES: [&str; 5] = ["0", "3", "13", "401", "429"];

/// Every `resultCode` applyToken answers with (CONTRACT §2.1).
pub const APPLY_TOKEN_RESULT_CODES: [&str; 4] = ["0", "3", "13", "429"];

/// The `# HELP` lines.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "leavemsg_webhook_deliveries_total",
        "Webhook tries by result: delivered (2xx), retry (failed, tried again later), failed (gave up)"
    );
    describe_counter!(
        "leavemsg_email_deliveries_total",
        "E-mail tries by result: delivered (accepted by the mail server), retry (failed, tried again later), failed (gave up)"
    );
    describe_counter!(
        "leavemsg_http_requests_total",
        "HTTP requests answered, by route pattern, method and status"
    );
    describe_histogram!(
        "leavemsg_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route pattern"
    );
    describe_counter!(
        "leavemsg_messages_stored_total",
        "Messages committed by doLeaveMessage"
    );
    describe_counter!(
        "leavemsg_messages_deduplicated_total",
        "doLeaveMessage resubmissions answered without storing a second row"
    );
    describe_histogram!(
        "leavemsg_write_batch_rows",
        "Messages written per group-commit batch"
    );
    describe_counter!(
        "leavemsg_rate_limited_total",
        "Visitor requests refused with 429, by the limit they exceeded (token or ip)"
    );
    describe_counter!(
        "leavemsg_database_failures_total",
        "Database errors and timeouts answered with 503, by operation"
    );
    describe_counter!(
        "leavemsg_leave_message_answers_total",
        "doLeaveMessage answers, by resultCode"
    );
    describe_counter!(
        "leavemsg_apply_token_answers_total",
        "applyToken answers, by resultCode"
    );
    describe_gauge!(
        "leavemsg_db_pool_connections",
        "Pooled database connections, in_use or idle"
    );
    describe_gauge!(
        "leavemsg_stream_clients",
        "Agents' live streams open on this instance"
    );
    describe_gauge!(
        "leavemsg_stream_listening",
        "1 while this instance LISTENs for new messages (only while it has stream clients)"
    );
    describe_gauge!(
        "leavemsg_build_info",
        "Always 1; the version label says which release runs"
    );
}

/// Creates every counter with each label value it can take, at 0, and the build-info gauge.
fn register() {
    // Registering a counter adds it to the recorder at 0 without counting anything.
    for result in WEBHOOK_RESULTS {
        metrics::counter!("leavemsg_webhook_deliveries_total", "result" => result).absolute(0);
        metrics::counter!("leavemsg_email_deliveries_total", "result" => result).absolute(0);
    }
    metrics::counter!("leavemsg_messages_stored_total").absolute(0);
    metrics::counter!("leavemsg_messages_deduplicated_total").absolute(0);
    for limit in Limit::ALL {
        metrics::counter!("leavemsg_rate_limited_total", "limit" => limit.label()).absolute(0);
    }
    for operation in DbOperation::ALL {
        metrics::counter!("leavemsg_database_failures_total", "operation" => operation.label())
            .absolute(0);
    }
    for code in LEAVE_MESSAGE_RESULT_CODES {
        metrics::counter!("leavemsg_leave_message_answers_total", "result_code" => code)
            .absolute(0);
    }
    for code in APPLY_TOKEN_RESULT_CODES {
        metrics::counter!("leavemsg_apply_token_answers_total", "result_code" => code).absolute(0);
    }
    metrics::gauge!("leavemsg_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The results of a webhook try (CONTRACT §7.3).
pub const WEBHOOK_RESULTS: [&str; 3] = ["delivered", "retry", "failed"];

/// `result` is one of [`WEBHOOK_RESULTS`].
pub fn webhook_delivery(result: &'static str) {
    metrics::counter!("leavemsg_webhook_deliveries_total", "result" => result).increment(1);
}

/// `result` is one of [`WEBHOOK_RESULTS`]: e-mails are tried, retried and given up alike.
pub fn email_delivery(result: &'static str) {
    metrics::counter!("leavemsg_email_deliveries_total", "result" => result).increment(1);
}

pub fn message_stored() {
    metrics::counter!("leavemsg_messages_stored_total").increment(1);
}

pub fn message_deduplicated() {
    metrics::counter!("leavemsg_messages_deduplicated_total").increment(1);
}

pub fn batch_written(rows: usize) {
    metrics::histogram!("leavemsg_write_batch_rows").record(rows as f64);
}

pub fn rate_limited(limit: Limit) {
    metrics::counter!("leavemsg_rate_limited_total", "limit" => limit.label()).increment(1);
}

pub fn database_failure(operation: DbOperation) {
    metrics::counter!("leavemsg_database_failures_total", "operation" => operation.label())
        .increment(1);
}

/// `code` is a `Refusal::code()` or "0": one of [`LEAVE_MESSAGE_RESULT_CODES`].
pub fn leave_message_answer(code: &'static str) {
    metrics::counter!("leavemsg_leave_message_answers_total", "result_code" => code).increment(1);
}

/// `code` is a `Refusal::code()` or "0": one of [`APPLY_TOKEN_RESULT_CODES`].
pub fn apply_token_answer(code: &'static str) {
    metrics::counter!("leavemsg_apply_token_answers_total", "result_code" => code).increment(1);
}

pub fn request(route: &str, method: &str, status: u16, seconds: f64) {
    metrics::counter!(
        "leavemsg_http_requests_total",
        "route" => route.to_owned(),
        "method" => method.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("leavemsg_http_request_duration_seconds", "route" => route.to_owned())
        .record(seconds);
}
