//! The PostgreSQL backend: the same tables in PostgreSQL's types
//! (`migrations/postgres/`), one connection pool, a statement per batch and kind of
//! row, so that several pipeline hosts can share one database.
//!
//! Layout: `ingest` (a batch's transaction), and one module per area of the storage
//! interface. Instants are bound as `timestamptz`; the interface's text forms
//! (`YYYY-MM-DDTHH:MM:SS.sssZ`, period keys) are converted at this edge.

mod aggregation;
mod dead_letters;
mod health;
mod ingest;
mod live_state;
mod queries;
mod report_schedules;
mod retention;
mod tallies;

use std::str::FromStr;
use std::time::Duration;

use butler_config::DatabaseUrl;
use butler_events::EventTime;
use chrono::{DateTime, Utc};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::DriverError;
use crate::{StorageError, StorageOptions};

/// The migrations of `migrations/postgres/`, embedded in the binary. sqlx takes an
/// advisory lock while it applies them, so instances starting together migrate once.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A pool on one PostgreSQL database.
#[derive(Debug, Clone)]
pub(crate) struct PgDb {
    pub(crate) pool: PgPool,
    /// The URL without its password.
    pub(crate) display: String,
}

impl PgDb {
    /// Connects to the database and applies pending migrations.
    pub(crate) async fn open(
        url: &DatabaseUrl,
        options: &StorageOptions,
    ) -> Result<PgDb, StorageError> {
        let display = url.redacted();
        let open_err = |source: DriverError| StorageError::Open {
            database: display.clone(),
            source,
        };
        // Acked means committed: a commit returns once its WAL record is flushed
        // (the server's default, made explicit). Times in UTC, so a text form of an
        // instant never depends on the server's zone.
        let connect = PgConnectOptions::from_str(url.expose())
            .map_err(|e| open_err(e.into()))?
            .options([("synchronous_commit", "on"), ("TimeZone", "UTC")])
            .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(10));
        let pool = PgPoolOptions::new()
            .max_connections(options.read_connections.max(1) + 4)
            .acquire_timeout(options.busy_timeout.max(Duration::from_secs(5)))
            .connect_with(connect)
            .await
            .map_err(|e| open_err(e.into()))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StorageError::Migrate {
                database: display.clone(),
                source,
            })?;
        Ok(PgDb {
            pool,
            display: display.clone(),
        })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

/// An instant of the interface's text form (`YYYY-MM-DDTHH:MM:SS.sssZ`, or a period
/// key of an hour) as a `timestamptz` value.
pub(crate) fn instant(text: &str) -> Result<DateTime<Utc>, StorageError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StorageError::Database(sqlx::Error::Decode(Box::new(e))))
}

/// A `timestamptz` value in the interface's text form.
pub(crate) fn text(t: DateTime<Utc>) -> String {
    EventTime::from_datetime(&t).to_string()
}
