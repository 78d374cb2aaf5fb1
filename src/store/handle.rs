//! [`Store`]: the one handle through which the rest of the service reaches the database. It
//! has one method per query (defined beside their SQL in this folder's files) and applies the
//! database deadline in one place, [`Store::run`].

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
}
