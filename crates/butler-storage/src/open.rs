//! Opening the database: connection settings and migrations.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{Storage, StorageError};

/// The migrations of the root `migrations/` folder, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How to open the database (from the `storage` config section).
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// The database file.
    pub path: PathBuf,
    /// How long a statement waits on another process's lock before failing busy.
    pub busy_timeout: Duration,
    /// Read connections for queries.
    pub read_connections: u32,
    /// Largest the database may grow, in bytes; `None` for no limit.
    pub max_size_bytes: Option<u64>,
}

impl StorageOptions {
    /// Options for `path` with the defaults of the `storage` section.
    pub fn new(path: impl Into<PathBuf>) -> StorageOptions {
        StorageOptions {
            path: path.into(),
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            max_size_bytes: None,
        }
    }
}

fn connect_options(
    path: &Path,
    busy_timeout: Duration,
) -> Result<SqliteConnectOptions, sqlx::Error> {
    // WAL lets dashboards read while ingest writes; FULL makes a commit durable
    // before the consumer acks it (CONTRACT §1). sqlx sets neither by default.
    Ok(SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(busy_timeout)
        .foreign_keys(true)
        .pragma("temp_store", "memory"))
}

impl Storage {
    /// Opens (creating when missing) the database and applies pending migrations.
    ///
    /// # Errors
    /// [`StorageError::Open`] when the file cannot be opened or is not a database;
    /// [`StorageError::Migrate`] when its schema is newer than this binary or a
    /// migration fails. Nothing is overwritten in either case.
    pub async fn open(options: &StorageOptions) -> Result<Storage, StorageError> {
        let display = options.path.display().to_string();
        let open_err = |source| StorageError::Open {
            path: display.clone(),
            source,
        };
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        }
        let connect = connect_options(&options.path, options.busy_timeout).map_err(open_err)?;
        // The writer's page cache (64 MiB instead of SQLite's 2 MiB) keeps the upper
        // levels of every index in memory once the raw table holds millions of rows,
        // so an insert reads only the leaf it lands on.
        let mut write_options = connect.clone().pragma("cache_size", "-65536");
        if let Some(bytes) = options.max_size_bytes {
            // In pages of SQLite's default 4 KiB.
            write_options =
                write_options.pragma("max_page_count", (bytes / 4096).max(1).to_string());
        }
        // A local file needs no liveness ping before each use; sqlx's default one is
        // a round trip to the connection's worker thread per query.
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(3600))
            .connect_with(write_options)
            .await
            .map_err(open_err)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|source| StorageError::Migrate {
                path: display.clone(),
                source,
            })?;
        let read_options = connect
            // 16 MiB of page cache per reader holds the interior pages of a raw table
            // of tens of millions of rows, so a bucket's row lookups do not grow with it.
            .pragma("cache_size", "-16384")
            .read_only(true)
            // Aggregation reads whole buckets (a day can be a million rows): only a read
            // far slower than that is worth a warning.
            .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10));
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(options.read_connections.max(1))
            .connect_with(read_options)
            .await
            .map_err(open_err)?;
        let ingest = crate::writer::IngestWriter::start(&crate::writer::WriterSettings {
            path: &options.path,
            busy_timeout: options.busy_timeout,
            max_page_count: options.max_size_bytes.map(|bytes| (bytes / 4096).max(1)),
        })
        .map_err(|e| match e {
            StorageError::Sqlite(source) => open_err(sqlx::Error::Protocol(source.to_string())),
            other => other,
        })?;
        let row_reader = crate::read::ReadPool::new(
            options.path.clone(),
            options.busy_timeout,
            options.read_connections,
        );
        Ok(Storage {
            writer,
            reader,
            path: options.path.clone(),
            write_failing: Arc::new(AtomicBool::new(false)),
            ingest,
            row_reader,
        })
    }

    /// Closes every connection, checkpointing the WAL, so the file is complete on its
    /// own after shutdown.
    pub async fn close(&self) {
        self.ingest.close().await;
        self.row_reader.close();
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
