//! Butler analytics storage: the only crate that speaks SQL.
//!
//! Its interface is shaped by what the other crates need — commit a batch of events
//! and dead letters, list and replay dead letters, report health — not by SQLite, so
//! that another backend (PostgreSQL, for a hotel group that outgrows one machine) can
//! be added here without touching the consumer, aggregator or query crates.
//!
//! Layout:
//! - [`connection`]: the settings of each kind of connection (WAL, `synchronous=FULL`,
//!   busy timeout, page caches), for both drivers, and the migrations;
//! - [`tables`]: the aggregate tables, each declared once, and their rows;
//! - [`ingest`]: [`Storage::commit_batch`], the one transaction per batch, run by the
//!   ingest writer thread (`ingest_writer`);
//! - [`dead_letters`]: listing and replaying rejected messages;
//! - [`aggregation`]: what the aggregator reads and writes (a bucket's events, the
//!   late-data queue, bucket rows, job runs and leases);
//! - [`retention`]: deleting what is past each table's retention;
//! - [`live_state`]: pruning the dashboard's live state, and keeping its counts exact;
//! - [`queries`]: what the query service reads (live state, series, resolutions);
//! - [`report_schedules`]: which fire times of each report schedule were handled;
//! - [`tallies`]: running counts kept by ingest, so dashboard and report windows
//!   read hours and minutes instead of every raw event;
//! - [`health`]: writability and size, for `/readyz` and metrics;
//! - `row_readers` (internal): the read-only rusqlite connections the reads that
//!   return many rows run on.

pub mod aggregation;
#[cfg(test)]
mod backends_agree;
pub mod dead_letters;
pub mod error;
pub mod health;
pub mod ingest;
pub mod live_state;
mod postgres;
pub mod queries;
pub mod report_schedules;
pub mod retention;
mod sqlite;
pub mod tables;
pub mod tallies;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transfer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub use butler_config::Database;
pub use dead_letters::{DeadLetter, DeadLetterFilter, ReplayOutcome};
pub use error::StorageError;
pub use ingest::{BatchOutcome, CommitPhases, NewDeadLetter};

/// How to open the database (from the `storage` config section).
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Which database, as `butler-config` read it from `storage.url` and
    /// `storage.path`: opened as is, so the choice is made in one place. That crate is
    /// light (serde, YAML and the event model; no driver, no runtime), lighter than a
    /// second type here for the same choice.
    pub database: Database,
    /// How long a statement waits on another process's lock before failing busy.
    pub busy_timeout: Duration,
    /// Read connections for queries.
    pub read_connections: u32,
    /// Largest the database may grow, in bytes; `None` for no limit.
    pub max_size_bytes: Option<u64>,
}

impl StorageOptions {
    /// Options for `database` with the defaults of the `storage` section.
    pub fn for_database(database: Database) -> StorageOptions {
        StorageOptions {
            database,
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            max_size_bytes: None,
        }
    }

    /// Options for the SQLite file `path` with the defaults of the `storage` section:
    /// the database of most tests.
    pub fn new(path: impl Into<PathBuf>) -> StorageOptions {
        StorageOptions::for_database(Database::Sqlite {
            path: path.into(),
            by_url: false,
        })
    }

    /// The SQLite file the SQLite backend opens; empty for PostgreSQL, whose backend
    /// never asks.
    pub(crate) fn sqlite_file(&self) -> &Path {
        match &self.database {
            Database::Sqlite { path, .. } => path,
            Database::Postgres { .. } => Path::new(""),
        }
    }
}

/// The database behind a [`Storage`].
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PgDb),
}

/// Calls the backend's own implementation of an operation.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match &$self.backend {
            $crate::Backend::Sqlite(db) => db.$method($($arg),*).await,
            $crate::Backend::Postgres(db) => db.$method($($arg),*).await,
        }
    };
}
pub(crate) use dispatch;

/// Handle on the analytics database. Cheap to clone; all clones share the
/// connections.
#[derive(Debug, Clone)]
pub struct Storage {
    backend: Backend,
    /// Set when the last write failed (disk full, IO error), cleared by the next
    /// success: `/readyz` reports it.
    write_failing: Arc<AtomicBool>,
}

impl Storage {
    /// Opens (creating when missing) the database and applies pending migrations.
    ///
    /// # Errors
    /// [`StorageError::Open`] when the database cannot be opened;
    /// [`StorageError::Migrate`] when its schema is newer than this binary or a
    /// migration fails. Nothing is overwritten in either case.
    pub async fn open(options: &StorageOptions) -> Result<Storage, StorageError> {
        let backend = match &options.database {
            Database::Sqlite { .. } => Backend::Sqlite(sqlite::SqliteDb::open(options).await?),
            Database::Postgres { url } => {
                Backend::Postgres(postgres::PgDb::open(url, options).await?)
            }
        };
        Ok(Storage {
            backend,
            write_failing: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Closes every connection (on SQLite, checkpointing the WAL, so the file is
    /// complete on its own after shutdown).
    pub async fn close(&self) {
        dispatch!(self.close())
    }

    /// The database file, for SQLite.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(db) => Some(&db.path),
            Backend::Postgres(_) => None,
        }
    }

    /// The database as logs show it: the SQLite file, or the PostgreSQL URL without
    /// its password.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(db) => db.path.display().to_string(),
            Backend::Postgres(db) => db.display.clone(),
        }
    }

    /// Which backend: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

#[cfg(test)]
impl Storage {
    /// The SQLite handles, for tests that read the file beside the interface.
    pub(crate) fn sqlite(&self) -> &sqlite::SqliteDb {
        match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(_) => panic!("a SQLite test on PostgreSQL"),
        }
    }
}
