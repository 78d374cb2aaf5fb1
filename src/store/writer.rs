//! Group commit: concurrent doLeaveMessage calls are written together, one multi-row INSERT
//! and one COMMIT for all of them, and each caller is answered only after that commit.
//!
//! Every HTTP worker has a [`Writer`] with its own connection (see `startup`), and all of an
//! instance's writers take from one [`WriteQueue`]. One writer at a time leads: the writer of
//! the worker whose submission found no batch being written takes everything queued, writes it,
//! and goes on while more is queued; then it lets go. So:
//! - a quiet service pays nothing for batching: a lone submission is written at once, by its
//!   own worker's writer, on the thread that received it (no hand-off to another thread);
//! - under load, everything that arrives on any worker while a batch commits forms the next
//!   batch. With two workers, batches are twice as large as with a queue per worker, with half
//!   the statements and commits; the workers' writers committed in turn anyway, as PostgreSQL
//!   lets one transaction that notifies commit at a time. `docs/performance.md` has the
//!   measurements.
//!
//! A writer whose task ends while it leads (its worker stopped first, at shutdown) hands the
//! lead on to another writer, so that what other workers queued is still written.
//!
//! Each writer keeps its own connection, opened with the pool's settings: no pool checkout and
//! no check-in round trip per batch. A connection that fails is dropped and the next batch
//! opens a new one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};
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
    #[error("{QUEUE} messages are already waiting to be written")]
    Busy,
}

struct Job {
    message: NewMessage,
    token_hash: [u8; 32],
    reply: oneshot::Sender<Result<Outcome, WriteError>>,
}

/// The submissions waiting to be written, shared by an instance's writers.
#[derive(Clone, Default)]
pub struct WriteQueue(Arc<Shared>);

#[derive(Default)]
struct Shared {
    jobs: Mutex<VecDeque<Job>>,
    /// Whether some writer is taking from `jobs` now (it will see what is added).
    leading: AtomicBool,
    /// Every writer's call, for handing the lead on when a writer's task ends.
    writers: Mutex<Vec<mpsc::WeakSender<()>>>,
}

impl Shared {
    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        // Nothing panics while holding the lock; a poisoned queue is still a queue.
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets go of the lead, unless it is needed back: a submission queued after the leader's
    /// last take but before it let go found the lead taken and called no writer. Returns
    /// whether the caller leads again (not if another writer has taken the lead since).
    fn let_go(&self) -> bool {
        self.leading.store(false, Ordering::SeqCst);
        !self.jobs().is_empty() && !self.leading.swap(true, Ordering::SeqCst)
    }

    /// After a writer's task ended, perhaps while leading (its worker stopped first, at
    /// shutdown): submissions still queued must not wait for it. Another writer is called; if
    /// one was leading already, two lead for a while, which only makes smaller batches.
    fn hand_on_the_lead(&self) {
        if !self.let_go() {
            return;
        }
        let writers = self
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let called = writers
            .iter()
            .filter_map(mpsc::WeakSender::upgrade)
            .any(|call| call.try_send(()).is_ok());
        if !called {
            self.leading.store(false, Ordering::SeqCst);
        }
    }

    /// Up to `most` of the oldest submissions.
    fn take(&self, most: usize) -> Vec<Job> {
        let mut jobs = self.jobs();
        let n = jobs.len().min(most);
        jobs.drain(..n).collect()
    }
}

/// Hands messages to the writers.
#[derive(Clone)]
pub struct Writer {
    queue: WriteQueue,
    /// Tells this writer's task to lead.
    lead: mpsc::Sender<()>,
}

impl Writer {
    /// A writer with a queue of its own; see [`Writer::joining`].
    pub fn start(store: &Store, window: Duration) -> Writer {
        Writer::joining(&WriteQueue::default(), store, window)
    }

    /// Starts a writer taking from `queue` on the current runtime; it connects with the store's
    /// settings when it first leads, and stops when every handle to it is dropped. With a
    /// non-zero `window` it waits that long after a batch's first message for more to join it.
    pub fn joining(queue: &WriteQueue, store: &Store, window: Duration) -> Writer {
        let pool = store.pool();
        let (lead, led) = mpsc::channel(1);
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
        queue
            .0
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(lead.downgrade());
        let seat = Seat {
            shared: Arc::clone(&queue.0),
            led,
        };
        tokio::spawn(run(connection, seat, window));
        Writer {
            queue: queue.clone(),
            lead,
        }
    }

    /// Stores `message` if `token_hash` is still its visitor's current token on an enabled
    /// channel; returns once the outcome is committed, or with [`StoreError::Timeout`] once
    /// the deadline has passed (the row is then written only if its batch had started).
    pub async fn write(
        &self,
        message: NewMessage,
        token_hash: [u8; 32],
    ) -> Result<Outcome, StoreError> {
        if self.lead.is_closed() {
            return Err(WriteError::Closed.into());
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut jobs = self.queue.0.jobs();
            if jobs.len() >= QUEUE {
                return Err(WriteError::Busy.into());
            }
            jobs.push_back(Job {
                message,
                token_hash,
                reply,
            });
        }
        // No writer is taking from the queue: this worker's writer leads.
        if !self.queue.0.leading.swap(true, Ordering::SeqCst) {
            let _ = self.lead.try_send(());
        }
        let written = within_deadline(async { answer.await.map_err(|_| WriteError::Closed)? });
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

/// What a writer's task takes from: the shared queue, and its own calls to lead.
struct Seat {
    shared: Arc<Shared>,
    led: mpsc::Receiver<()>,
}

impl Drop for Seat {
    /// However the task ends (its runtime may be dropped in the middle of a batch), it takes no
    /// more calls, and the lead goes on to another writer.
    fn drop(&mut self) {
        self.led.close();
        self.shared.hand_on_the_lead();
    }
}

async fn run(mut connection: Connection, mut seat: Seat, window: Duration) {
    while seat.led.recv().await.is_some() {
        // Leading: write what is queued, batch after batch, until nothing is.
        loop {
            let mut batch = seat.shared.take(MAX_BATCH);
            if batch.is_empty() {
                if seat.shared.let_go() {
                    continue;
                }
                break;
            }
            if !window.is_zero() && batch.len() < MAX_BATCH {
                tokio::time::sleep(window).await;
                batch.extend(seat.shared.take(MAX_BATCH - batch.len()));
            }
            counters::batch_written(batch.len());
            write_batch(&mut connection, batch).await;
        }
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
