//! Read-only rusqlite connections for the reads that return many rows: a time series,
//! a bucket's events, a window's tallies.
//!
//! Why not sqlx here: sqlx runs each connection on a worker thread of its own and
//! hands every result row across to the async side, so a query of a few hundred rows
//! is a few hundred thread wake-ups. Measured at 16 concurrent time-series requests
//! (365 rows each), a third of the process's CPU was the kernel switching threads
//! (`BENCHMARKS.md`). Here a whole query runs on one blocking thread and its result
//! crosses over once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::StorageError;

/// Up to `max` read-only connections, opened when first needed and kept.
#[derive(Debug, Clone)]
pub(crate) struct ReadPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration, max: u32) -> ReadPool {
        ReadPool {
            inner: Arc::new(Inner {
                path,
                busy_timeout,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(max.max(1) as usize),
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
        .map_err(|e| StorageError::Database(sqlx::Error::Io(std::io::Error::other(e))))?;
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
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        // As the sqlx readers: 16 MiB of page cache holds the interior pages of a raw
        // table of tens of millions of rows.
        conn.pragma_update(None, "cache_size", -16384)?;
        conn.pragma_update(None, "temp_store", "memory")?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

/// Column `i` of a row as text borrowed from SQLite, without an allocation.
pub(crate) fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StorageError> {
    row.get_ref(i)?.as_str().map_err(|e| {
        StorageError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::new(e),
        ))
    })
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
            let pool = storage.row_reader.clone();
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
        let idle = storage.row_reader.inner.idle.lock().unwrap().len();
        assert!((1..=2).contains(&idle), "{idle} connections kept");
        storage.close().await;
        let after = storage.live_counts("p").await;
        assert!(matches!(after, Err(StorageError::Closed)), "{after:?}");
    }
}
