//! [`Store`]: the one handle through which the rest of the service reaches the database. It
//! has one method per query (defined beside their SQL in this folder's files) and applies the
//! database deadline in one place, [`Store::run`].
//!
//! After a database restart every idle pooled connection is dead, and each would fail one
//! request. Queries that are safe to run twice (reads, and writes that state a value rather
//! than change one) use [`Store::run_retrying`]: a statement that fails because its connection
//! broke sets the other idle connections aside (the pool tests each as it comes back and
//! closes the dead) and runs once more, on a connection the pool opens afresh.

use std::future::Future;

use sqlx::PgPool;

use super::{StoreError, within_deadline};

/// The connection pool, and the runtime database work runs on.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// The runtime the server was built on, which outlives the HTTP workers' runtimes: every
    /// request's database work runs there, so pooled connections never belong to a worker that
    /// stops first during a graceful shutdown.
    runtime: tokio::runtime::Handle,
}

impl Store {
    /// A store on `pool` whose work runs on the current runtime.
    pub fn new(pool: PgPool) -> Store {
        Store {
            pool,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// A store of its own for work on another runtime (the outbox's low-priority thread): a
    /// pool of at most `max_connections`, opened as needed with this one's connection
    /// settings, on the current runtime. Close its pool when done.
    pub fn on_own_pool(&self, max_connections: u32) -> Store {
        let options = (*self.pool.connect_options()).clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .acquire_timeout(super::DEADLINE)
            .connect_lazy_with(options);
        Store::new(pool)
    }

    /// The pool itself: for its gauges, and for the writers and the listener, which open
    /// connections of their own with its settings.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `work` with the pool on the store's runtime, within [`super::DEADLINE`]; beyond it
    /// the caller gets [`StoreError::Timeout`] (the statement timeout ends the work itself).
    pub(super) async fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(PgPool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let task = self.runtime.spawn(async move { work(pool).await });
        match within_deadline(task).await? {
            Ok(result) => result.map_err(StoreError::from),
            Err(failed) => Err(StoreError::Task(failed.to_string())),
        }
    }

    /// Starts `work` on the store's runtime without waiting for it, within the same deadline:
    /// bookkeeping a request need not wait for. A failure is only logged, as `what`.
    pub(super) fn run_detached<F, Fut>(&self, what: &'static str, work: F)
    where
        F: FnOnce(PgPool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), sqlx::Error>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.runtime.spawn(async move {
            match within_deadline(work(pool)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed"),
                Err(e) => tracing::warn!(error = %e, "{what} failed"),
            }
        });
    }

    /// [`Store::run`] for work that is safe to run twice: when its connection turns out to be
    /// broken, the idle connections are set aside and `work` runs once more, within the same
    /// deadline.
    pub(super) async fn run_retrying<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: Fn(PgPool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
        T: Send + 'static,
    {
        self.run(move |pool| async move {
            match work(pool.clone()).await {
                Err(e) if is_broken_connection(&e) => {
                    tracing::warn!(error = %e, "a pooled connection was broken; trying a fresh one");
                    set_idle_connections_aside(&pool);
                    work(pool).await
                }
                other => other,
            }
        })
        .await
    }
}

/// Whether an error means the connection it happened on is gone (the server restarted or
/// went away, the network broke), rather than anything about the statement.
pub(super) fn is_broken_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        // Class 08: connection exception; 57P01/57P02: the server terminated the session.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P02"),
        _ => false,
    }
}

/// Takes every idle connection out of the pool at once and gives them back: the pool tests each
/// on its way back and closes the dead, and meanwhile the next acquire opens a fresh one.
fn set_idle_connections_aside(pool: &PgPool) {
    let idle: Vec<_> = std::iter::from_fn(|| pool.try_acquire()).collect();
    drop(idle);
}
