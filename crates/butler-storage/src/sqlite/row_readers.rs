//! Read-only rusqlite connections, on which every `Role::Read` query of the storage
//! interface runs (a time series, a bucket's events, a window's tallies, live counts,
//! job states).
//!
//! Why not sqlx here: sqlx runs each connection on a worker thread of its own and
//! hands every result row across to the async side, so a query of a few hundred rows
//! is a few hundred thread wake-ups, which under concurrent time-series requests was a
//! large share of the process's CPU (`BENCHMARKS.md`). Here a whole query runs on one
//! blocking thread and its result crosses over once.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::connection::ConnectionKind;
use crate::StorageError;
use crate::StorageOptions;

/// Up to `storage.read_connections` read-only connections, opened when first needed
/// and kept.
#[derive(Debug, Clone)]
pub(crate) struct RowReaders {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: StorageOptions,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl RowReaders {
    pub(crate) fn new(options: StorageOptions) -> RowReaders {
        let max = options.read_connections.max(1) as usize;
        RowReaders {
            inner: Arc::new(Inner {
                options,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(max),
            }),
        }
    }

    /// Runs `read` on a connection of the pool, on a blocking thread.
    pub(crate) async fn run<T, F>(&self, read: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| StorageError::Closed)?;
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || {
            let conn = match inner.idle.lock().ok().and_then(|mut idle| idle.pop()) {
                Some(conn) => conn,
                None => inner.open()?,
            };
            let result = read(&conn);
            if let Ok(mut idle) = inner.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(StorageError::ReadFailed)?;
        drop(permit);
        result
    }

    /// Closes the idle connections; a read running now keeps its own until it ends.
    pub(crate) fn close(&self) {
        self.inner.permits.close();
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.clear();
        }
    }
}

impl Inner {
    fn open(&self) -> Result<Connection, StorageError> {
        let conn = ConnectionKind::Reader.open_rusqlite(&self.options)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Storage, StorageError, StorageOptions};

    /// More reads at once than there are connections: each waits its turn, none fails,
    /// and the pool never opens more than its limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_reads_than_connections_all_complete_then_close_refuses_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = StorageOptions::new(dir.path().join("a.db"));
        options.read_connections = 2;
        let storage = Storage::open(&options).await.unwrap();
        let mut reads = Vec::new();
        for i in 0..24i64 {
            let pool = storage.sqlite().row_readers.clone();
            reads.push(tokio::spawn(async move {
                pool.run(move |conn| {
                    let n: i64 = conn.query_row("SELECT ?1 * 2", [i], |r| r.get(0))?;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    Ok(n)
                })
                .await
            }));
        }
        for (i, read) in reads.into_iter().enumerate() {
            assert_eq!(read.await.unwrap().unwrap(), 2 * i as i64);
        }
        let idle = storage
            .sqlite()
            .row_readers
            .inner
            .idle
            .lock()
            .unwrap()
            .len();
        assert!((1..=2).contains(&idle), "{idle} connections kept");
        storage.close().await;
        let after = storage.live_counts("p").await;
        assert!(matches!(after, Err(StorageError::Closed)), "{after:?}");
    }
}
