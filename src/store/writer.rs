//! Group commit: concurrent doLeaveMessage calls are written together, one multi-row INSERT
//! and one COMMIT for all of them, and each caller is answered only after that commit.
//!
//! Batches form by themselves: while one batch commits, new submissions queue; the next batch
//! takes all of them (up to [`MAX_BATCH`]). A lone submission is written at once, so a quiet
//! service pays no extra latency.
//!
//! Each HTTP worker starts its own [`Writer`] (see `startup`), so a request is queued, written
//! and answered on one thread, and an instance commits as many batches at once as it has
//! workers (one writer per worker measured best: more make smaller batches that contend for
//! the same index pages; `docs/performance.md`). Each writer keeps its own connection, opened with the pool's settings: no pool
//! checkout and no check-in round trip per batch. A connection that fails is dropped and the
//! next batch opens a new one.

use std::sync::Arc;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::handle::is_broken_connection;
use super::messages::{NewMessage, Outcome};
use super::{Store, StoreError, within_deadline};
use crate::counters;

/// Most rows one INSERT carries.
pub const MAX_BATCH: usize = 512;
/// Submissions that may wait for a writer before callers are told the service is busy.
const QUEUE: usize = 8192;
/// How long opening a writer's connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the batch could not be written: {0}")]
    Database(String),
    #[error("the writer is not running")]
    Closed,
}

struct Job {
    message: NewMessage,
    token_hash: [u8; 32],
    reply: oneshot::Sender<Result<Outcome, WriteError>>,
}

/// Hands messages to the writers.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer on the current runtime; it connects with `pool`'s settings when the
    /// first message arrives, and stops when every handle to it is dropped. With a non-zero
    /// `window` it waits that long after a batch's first message for more to join it.
    pub fn start(store: &Store, window: Duration) -> Writer {
        let pool = store.pool();
        let (queue, receiver) = mpsc::channel(QUEUE);
        // The writer runs the same two statements all the time: a generic plan, made once per
        // connection, saves planning each batch again (measured: half the time of a one-row
        // batch; the plan looks rows up by index whatever the batch size).
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        let connection = Connection {
            options: Arc::new(options),
            open: None,
        };
        tokio::spawn(run(connection, receiver, window));
        Writer { queue }
    }

    /// Stores `message` if `token_hash` is still its visitor's current token on an enabled
    /// channel; returns once the outcome is committed, or with [`StoreError::Timeout`] once
    /// the deadline has passed (the row is then written only if its batch had started).
    pub async fn write(
        &self,
        message: NewMessage,
        token_hash: [u8; 32],
    ) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            message,
            token_hash,
            reply,
        };
        let written = within_deadline(async {
            self.queue.send(job).await.map_err(|_| WriteError::Closed)?;
            answer.await.map_err(|_| WriteError::Closed)?
        });
        Ok(written.await??)
    }
}

/// A writer's own connection, opened on first use and again after a failure.
struct Connection {
    options: Arc<PgConnectOptions>,
    open: Option<PgConnection>,
}

impl Connection {
    async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.open.is_none() {
            let connecting = self.options.connect();
            let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
            self.open = Some(connection);
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Forgets the connection after an error that may have broken it (anything but a
    /// refused row or a transient conflict, after which it is known to be usable).
    fn after_error(&mut self, e: &sqlx::Error) {
        if !is_data_error(e) && !is_transient(e) {
            self.open = None;
        }
    }
}

async fn run(mut connection: Connection, mut receiver: mpsc::Receiver<Job>, window: Duration) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        let gathered_until = tokio::time::Instant::now() + window;
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Empty) if !window.is_zero() => {
                    match tokio::time::timeout_at(gathered_until, receiver.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        _ => break,
                    }
                }
                Err(_) => break,
            }
        }
        counters::batch_written(batch.len());
        write_batch(&mut connection, batch).await;
    }
}

async fn write_batch(connection: &mut Connection, mut batch: Vec<Job>) {
    // Callers that gave up (their deadline passed while queued) were answered 503: not writing
    // their rows keeps "not acknowledged" as close to "not stored" as possible.
    batch.retain(|job| !job.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let rows: Vec<(&NewMessage, [u8; 32])> =
        batch.iter().map(|j| (&j.message, j.token_hash)).collect();
    let results = match insert_with_retry(connection, &rows).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) if is_data_error(&e) && batch.len() > 1 => {
            // One bad row must not fail the others: write them one by one.
            tracing::warn!(error = %e, rows = batch.len(), "batch refused; writing rows singly");
            let mut results = Vec::with_capacity(batch.len());
            for row in &rows {
                results.push(
                    insert_with_retry(connection, std::slice::from_ref(row))
                        .await
                        .map(|mut o| o.remove(0))
                        .map_err(|e| WriteError::Database(e.to_string())),
                );
            }
            results
        }
        Err(e) => {
            let error = WriteError::Database(e.to_string());
            batch.iter().map(|_| Err(error.clone())).collect()
        }
    };
    for (job, result) in batch.into_iter().zip(results) {
        // The caller may have given up (deadline); the outcome stands either way.
        let _ = job.reply.send(result);
    }
}

/// Deadlocks and serialization failures are resolved by trying again; so is a connection
/// found broken (the database restarted since the last batch), once, on a new connection:
/// rows already stored are then found by their submission key, so nothing is stored twice.
async fn insert_with_retry(
    connection: &mut Connection,
    rows: &[(&NewMessage, [u8; 32])],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut attempt = 0;
    let mut reconnected = false;
    loop {
        attempt += 1;
        let written = match connection.get().await {
            Ok(open) => super::messages::insert_batch(open, rows).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &written {
            connection.after_error(e);
        }
        match written {
            Err(e) if attempt < 3 && is_transient(&e) => {
                tracing::warn!(error = %e, attempt, "batch write failed transiently; retrying");
            }
            Err(e) if !reconnected && is_broken_connection(&e) => {
                reconnected = true;
                tracing::warn!(error = %e, "the writer's connection was broken; reconnecting");
            }
            other => return other,
        }
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Errors about the data of some row (class 22 data exception, 23 integrity violation), as
/// opposed to the database being unavailable.
fn is_data_error(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}
