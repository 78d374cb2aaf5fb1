//! Black-box tests over HTTP against a real PostgreSQL.

mod apply_token;
mod cli;
mod database_faults;
mod helpers;
mod leave_message;
mod origins;
