//! Opening the database: the settings of each kind of connection, in one place for
//! both drivers, and the migrations (run on the sqlx writer before any other opens).
//!
//! Writers run in WAL mode with `synchronous=FULL`, so a commit is durable before the
//! consumer acks it (CONTRACT §1). There are three, one connection each, taking the
//! write lock in turn: the ingest writer thread, the sqlx writer (aggregation,
//! retention, operator commands) and the lease writer (so a renewal never queues
//! behind the run it keeps alive). Readers are read-only: the rusqlite row readers and
//! a small sqlx pool for backups and copies.

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::SqliteDb;
use super::ingest_writer::IngestWriter;
use super::row_readers::RowReaders;
use crate::error::DriverError;
use crate::{StorageError, StorageOptions};

/// The migrations of the root `migrations/` folder, embedded in the binary.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// What a connection does, which decides its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionKind {
    /// Writes: ingest batches, aggregate buckets, retention, operator commands.
    Writer,
    /// Reads beside the writers.
    Reader,
}

/// WAL pages after which a commit copies the log back into the database. Each ingest
/// batch rewrites the same hot pages (the ends of each index, live state, tallies);
/// with SQLite's default of 1,000 pages nearly every commit paid for a checkpoint of
/// them, with 10,000 (about 40 MB of log) each page is copied back once for many
/// commits (`BENCHMARKS.md`).
const WAL_CHECKPOINT_PAGES: u64 = 10_000;

impl ConnectionKind {
    /// The pragmas of this kind of connection, as `(name, value)`, in the order they
    /// are set.
    pub(crate) fn pragmas(self, options: &StorageOptions) -> Vec<(&'static str, String)> {
        let mut pragmas = vec![("temp_store", "memory".to_owned())];
        match self {
            ConnectionKind::Writer => {
                // WAL lets readers run beside the writer; FULL makes a commit durable
                // before it returns. sqlx sets neither by default.
                pragmas.push(("journal_mode", "wal".to_owned()));
                pragmas.push(("synchronous", "full".to_owned()));
                pragmas.push(("foreign_keys", "on".to_owned()));
                // 64 MiB of page cache keeps the upper levels of every index in memory
                // once the raw table holds millions of rows, so an insert reads only
                // the leaf it lands on.
                pragmas.push(("cache_size", "-65536".to_owned()));
                pragmas.push(("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string()));
                if let Some(bytes) = options.max_size_bytes {
                    // In pages of SQLite's default 4 KiB.
                    pragmas.push(("max_page_count", (bytes / 4096).max(1).to_string()));
                }
            }
            ConnectionKind::Reader => {
                // 16 MiB per reader holds the interior pages of a raw table of tens of
                // millions of rows, so a bucket's or a window's lookups do not grow
                // with it.
                pragmas.push(("cache_size", "-16384".to_owned()));
            }
        }
        pragmas
    }

    /// Settings for an sqlx connection of this kind.
    fn sqlx_options(self, options: &StorageOptions) -> Result<SqliteConnectOptions, sqlx::Error> {
        let mut connect = SqliteConnectOptions::from_str("sqlite:")?
            .filename(options.sqlite_file())
            .busy_timeout(options.busy_timeout);
        for (name, value) in self.pragmas(options) {
            connect = connect.pragma(name, value);
        }
        Ok(match self {
            ConnectionKind::Writer => connect.create_if_missing(true),
            // Aggregation reads whole buckets (a day can be a million rows): only a
            // read far slower than that is worth a warning.
            ConnectionKind::Reader => connect
                .read_only(true)
                .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10)),
        })
    }

    /// A rusqlite connection of this kind.
    pub(crate) fn open_rusqlite(
        self,
        options: &StorageOptions,
    ) -> Result<rusqlite::Connection, rusqlite::Error> {
        use rusqlite::OpenFlags;
        let flags = match self {
            ConnectionKind::Writer => OpenFlags::SQLITE_OPEN_READ_WRITE,
            ConnectionKind::Reader => OpenFlags::SQLITE_OPEN_READ_ONLY,
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(options.sqlite_file(), flags)?;
        conn.busy_timeout(options.busy_timeout)?;
        for (name, value) in self.pragmas(options) {
            conn.pragma_update(None, name, value)?;
        }
        Ok(conn)
    }
}

impl SqliteDb {
    /// Opens (creating when missing) the database file and applies pending
    /// migrations.
    pub(crate) async fn open(options: &StorageOptions) -> Result<SqliteDb, StorageError> {
        let path = options.sqlite_file();
        let display = path.display().to_string();
        let open_err = |source: DriverError| StorageError::Open {
            database: display.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.into()))?;
        }
        // A local file needs no liveness ping before each use; sqlx's default one is a
        // round trip to the connection's thread.
        let pool = |kind: ConnectionKind,
                    max: u32,
                    options_of: fn(SqlitePoolOptions) -> SqlitePoolOptions| {
            let pool = options_of(SqlitePoolOptions::new().test_before_acquire(false));
            async move {
                pool.max_connections(max)
                    .connect_with(kind.sqlx_options(options)?)
                    .await
            }
        };
        // One connection, kept open: writes are serialized here, however long they
        // queue, instead of contending for SQLite's lock inside the process.
        let sql_writer = pool(ConnectionKind::Writer, 1, |p| {
            p.min_connections(1)
                .acquire_timeout(Duration::from_secs(3600))
        })
        .await
        .map_err(|e| open_err(e.into()))?;
        MIGRATOR
            .run(&sql_writer)
            .await
            .map_err(|source| StorageError::Migrate {
                database: display.clone(),
                source,
            })?;
        let lease_writer = pool(ConnectionKind::Writer, 1, |p| p)
            .await
            .map_err(|e| open_err(e.into()))?;
        let sql_readers = pool(
            ConnectionKind::Reader,
            options.read_connections.max(1),
            |p| p,
        )
        .await
        .map_err(|e| open_err(e.into()))?;
        let ingest_writer = IngestWriter::start(
            ConnectionKind::Writer
                .open_rusqlite(options)
                .map_err(|e| open_err(e.into()))?,
        )
        .map_err(|e| open_err(e.into()))?;
        let row_readers = RowReaders::new(options.clone());
        Ok(SqliteDb {
            sql_writer,
            lease_writer,
            sql_readers,
            path: path.to_owned(),
            ingest_writer,
            row_readers,
        })
    }

    /// Closes every connection, checkpointing the WAL, so the file is complete on its
    /// own after shutdown.
    pub(crate) async fn close(&self) {
        self.ingest_writer.close().await;
        self.row_readers.close();
        self.sql_readers.close().await;
        self.lease_writer.close().await;
        self.sql_writer.close().await;
    }
}
