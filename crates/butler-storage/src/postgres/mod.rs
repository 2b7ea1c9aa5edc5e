//! The PostgreSQL backend: the same tables in PostgreSQL's types
//! (`migrations/postgres/`), one connection pool, so that several pipeline hosts can
//! share one database.
//!
//! Layout: `ingest` (a batch's transaction, a statement per kind of row).

mod ingest;

use std::str::FromStr;
use std::time::Duration;

use butler_config::SecretUrl;
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
}

impl PgDb {
    /// Connects to the database and applies pending migrations.
    pub(crate) async fn open(
        url: &SecretUrl,
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
        Ok(PgDb { pool })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}
