//! The process's metrics: counters and histograms anything may bump, and the recorder that
//! holds them (`ops::metrics` renders them at `GET /metrics`). Named `counters` so it does not shadow
//! the `metrics` crate it is built on.
//!
//! - `leavemsg_http_requests_total{route,method,status}` and
//!   `leavemsg_http_request_duration_seconds{route}` (histogram), for every request;
//! - `leavemsg_messages_stored_total`, `leavemsg_messages_deduplicated_total`;
//! - `leavemsg_rate_limited_total{limit="token"|"ip"}`;
//! - `leavemsg_database_failures_total{operation}` (answers of 503);
//! - `leavemsg_write_batch_rows` (histogram): messages per group-commit batch;
//! - `leavemsg_db_pool_connections{state="in_use"|"idle"}`, `leavemsg_stream_clients`,
//!   `leavemsg_stream_listening` (1 while the instance LISTENs for new messages, which it does
//!   only while it has stream clients) (gauges, read at scrape time).

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
        handle
    })
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

pub fn rate_limited(limit: &'static str) {
    metrics::counter!("leavemsg_rate_limited_total", "limit" => limit).increment(1);
}

pub fn database_failure(operation: &'static str) {
    metrics::counter!("leavemsg_database_failures_total", "operation" => operation).increment(1);
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
