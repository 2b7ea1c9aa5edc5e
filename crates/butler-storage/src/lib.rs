//! Butler analytics storage: the only crate that speaks SQL.
//!
//! Its interface, one type ([`Storage`]), is shaped by what the other crates need —
//! commit a batch of events and dead letters, roll up a bucket, read a window, a
//! series, live state — not by a database: the consumer, aggregator and query crates
//! never learn whether SQLite or PostgreSQL is behind it.
//!
//! Layout:
//! - `sql` (internal): the one layer that knows the backend — the spellings that
//!   differ (`Dialect`), values bound and read in each backend's types, and running a
//!   statement or a transaction on either. Every statement below is written once
//!   against it;
//! - [`tables`]: the aggregate tables, each declared once, and their rows;
//! - [`ingest`]: [`Storage::commit_batch`], the one transaction per batch: on SQLite
//!   the ingest writer thread (`sqlite::ingest_writer`, rusqlite), on PostgreSQL array
//!   inserts (`postgres::ingest`) — the one operation kept apart per backend, since the
//!   fastest form of each has nothing in common with the other's;
//! - [`dead_letters`]: listing and replaying rejected messages;
//! - [`aggregation`]: what the aggregator reads and writes (a bucket's events, the
//!   late-data queue, bucket rows, job runs and leases);
//! - [`retention`]: deleting what is past each table's retention;
//! - [`live_state`]: pruning the dashboard's live state, and keeping its counts exact;
//! - [`queries`]: what the query service reads (live state, series, resolutions);
//! - [`report_schedules`]: which fire times of each report schedule were handled;
//! - [`tallies`]: running counts kept by ingest, so dashboard and report windows
//!   read hours and minutes instead of every raw event;
//! - [`health`]: writability, size and backups, each backend answering its own way;
//! - [`probe`]: what `validate` reads of a database without creating or migrating it;
//! - [`transfer`]: copying a SQLite database into PostgreSQL;
//! - `sqlite`, `postgres` (internal): opening each (connections, settings,
//!   migrations) and its ingest.

pub mod aggregation;
#[cfg(test)]
mod backends_agree;
pub mod dead_letters;
pub mod error;
pub mod health;
pub mod ingest;
pub mod live_state;
mod postgres;
pub mod probe;
pub mod queries;
pub mod report_schedules;
pub mod retention;
mod sql;
mod sqlite;
pub mod tables;
pub mod tallies;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transfer;
#[cfg(test)]
mod upgrades;

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

/// Calls the backend's own implementation of an operation.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* $(,)? )) => {
        match &$self.backend {
            $crate::sql::Db::Sqlite(db) => db.$method($($arg),*).await,
            $crate::sql::Db::Postgres(db) => db.$method($($arg),*).await,
        }
    };
}
pub(crate) use dispatch;

/// Handle on the analytics database. Cheap to clone; all clones share the
/// connections.
#[derive(Debug, Clone)]
pub struct Storage {
    backend: sql::Db,
    /// Which database, as configured.
    database: Database,
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
            Database::Sqlite { .. } => sql::Db::Sqlite(sqlite::SqliteDb::open(options).await?),
            Database::Postgres { url } => {
                sql::Db::Postgres(postgres::PgDb::open(url, options).await?)
            }
        };
        Ok(Storage {
            backend,
            database: options.database.clone(),
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
            sql::Db::Sqlite(db) => Some(&db.path),
            sql::Db::Postgres(_) => None,
        }
    }

    /// The database as logs show it: the SQLite file, or the PostgreSQL URL without
    /// its password.
    pub fn describe(&self) -> String {
        self.database.to_string()
    }

    /// Which backend: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            sql::Db::Sqlite(_) => "sqlite",
            sql::Db::Postgres(_) => "postgres",
        }
    }
}

#[cfg(test)]
impl Storage {
    /// The SQLite handles, for tests that read the file beside the interface.
    pub(crate) fn sqlite(&self) -> &sqlite::SqliteDb {
        match &self.backend {
            sql::Db::Sqlite(db) => db,
            sql::Db::Postgres(_) => panic!("a SQLite test on PostgreSQL"),
        }
    }
}
