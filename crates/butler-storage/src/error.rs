//! Storage errors.

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be opened or created.
    #[error("cannot open database {database}: {source}")]
    Open {
        /// The SQLite file, or the PostgreSQL URL without its password.
        database: String,
        /// What stood in the way.
        source: DriverError,
    },
    /// The schema could not be brought up to date, e.g. the file was written by a
    /// newer version of the pipeline.
    #[error("cannot migrate database {database}: {source}")]
    Migrate {
        /// The SQLite file, or the PostgreSQL URL without its password.
        database: String,
        /// The migrator's error.
        source: sqlx::migrate::MigrateError,
    },
    /// A backup would overwrite a file.
    #[error("{0} exists already; a backup never overwrites a file")]
    BackupTargetExists(std::path::PathBuf),
    /// A statement failed; busy, locked, full and IO errors are worth retrying.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A statement on a rusqlite connection (the ingest writer, the query readers)
    /// failed; as for [`StorageError::Database`].
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A read on the row readers panicked, or its thread was cancelled.
    #[error("a database read failed: {0}")]
    ReadFailed(#[source] tokio::task::JoinError),
    /// The database takes no writes (a PostgreSQL standby, a read-only session).
    #[error("the database is read-only")]
    ReadOnly,
    /// The operation has no meaning on this backend; the message says what to use.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The ingest writer's thread has stopped (the storage was closed).
    #[error("the ingest writer has stopped")]
    WriterGone,
    /// A write under a lease found the lease held by another process.
    #[error("lease {0} is held by another process")]
    LeaseLost(String),
    /// The storage was closed while a read waited for a connection.
    #[error("the storage has been closed")]
    Closed,
}

/// The cause under an error while opening, whichever driver or system call raised it.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// From sqlx (the pools).
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// From rusqlite (the ingest writer, the row readers).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// From the file system, or starting a thread.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// Whether the database server could not be reached (refused, timed out, still
    /// starting): worth waiting for, where a bad setting is not.
    pub fn is_unreachable(&self) -> bool {
        let sqlx_error = match self {
            StorageError::Open {
                source: DriverError::Sqlx(e),
                ..
            }
            | StorageError::Database(e) => e,
            StorageError::Migrate {
                source: sqlx::migrate::MigrateError::Execute(e),
                ..
            } => e,
            _ => return false,
        };
        match sqlx_error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
            // cannot_connect_now: the server is starting up or shutting down.
            sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
            _ => false,
        }
    }

    /// Whether the database was merely busy (another process holds the lock): retry
    /// soon, nothing is wrong.
    pub fn is_busy(&self) -> bool {
        match self {
            StorageError::Database(sqlx::Error::Database(db)) => {
                matches!(
                    db.code().as_deref(),
                    Some("5" | "6" | "517" | "261" | "262")
                )
            }
            StorageError::Database(sqlx::Error::PoolTimedOut) => true,
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}
