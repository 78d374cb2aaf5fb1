//! Black-box tests over HTTP against a real PostgreSQL.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod agent_lifecycle;
mod agents;
mod apply_token;
mod attempts;
mod browser;
mod channel_update;
mod cli;
mod database_faults;
mod database_tls;
mod email;
mod export;
mod helpers;
mod leave_message;
mod operations;
mod origins;
mod process;
mod queue_metrics;
mod stream;
mod webhook_admin;
mod webhooks;
mod writer;
