//! What `validate` learns of a database without changing it: whether it is there,
//! which of this binary's migrations it holds, and whether it would take writes.
//! Opening [`crate::Storage`] would create the file and apply migrations; an operator
//! checking a deployment wants neither.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;

use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::error::DriverError;
use crate::{Database, StorageError, StorageOptions};

/// The versions of the migrations applied, in sqlx's own table (the same on both
/// backends).
const APPLIED: &str = "SELECT version FROM _sqlx_migrations WHERE success";

/// The database as `validate` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseProbe {
    /// Whether the database exists yet (a SQLite file is created at start).
    pub exists: bool,
    /// This binary's migrations already applied there.
    pub applied: usize,
    /// This binary's migrations still to apply, at start or by `migrate`.
    pub pending: usize,
    /// Migrations applied there that this binary does not know: a newer version's
    /// schema, which this binary refuses to open.
    pub unknown: usize,
    /// Why the database would refuse writes, if it would.
    pub not_writable: Option<String>,
}

/// Looks at the database `options` name without creating, migrating or writing it.
///
/// # Errors
/// [`StorageError::Open`] when it exists but cannot be read (or the server cannot be
/// reached), [`StorageError::Database`] when a question to it fails.
pub async fn probe(options: &StorageOptions) -> Result<DatabaseProbe, StorageError> {
    match &options.database {
        Database::Sqlite { path, .. } => probe_sqlite(path).await,
        Database::Postgres { url } => {
            let open_err = |source: DriverError| StorageError::Open {
                database: url.redacted(),
                source,
            };
            let connect =
                PgConnectOptions::from_str(url.expose()).map_err(|e| open_err(e.into()))?;
            let mut conn = PgConnection::connect_with(&connect)
                .await
                .map_err(|e| open_err(e.into()))?;
            let has_table: bool =
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(&mut conn)
                    .await?;
            let applied = match has_table {
                true => sqlx::query_scalar(APPLIED).fetch_all(&mut conn).await?,
                false => Vec::new(),
            };
            let writable: bool = sqlx::query_scalar(
                "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' \
                 AND has_database_privilege(current_database(), 'CREATE')",
            )
            .fetch_one(&mut conn)
            .await?;
            conn.close().await?;
            Ok(compare(
                true,
                &crate::postgres::MIGRATOR,
                applied,
                (!writable).then(|| {
                    "the server is a standby, read-only, or denies CREATE on the database".into()
                }),
            ))
        }
    }
}

/// The SQLite file: read-only when it exists; otherwise whether its directory could
/// hold it.
async fn probe_sqlite(path: &Path) -> Result<DatabaseProbe, StorageError> {
    let migrator = &crate::sqlite::MIGRATOR;
    if !path.exists() {
        return Ok(compare(false, migrator, Vec::new(), creatable(path)));
    }
    let open_err = |source: DriverError| StorageError::Open {
        database: path.display().to_string(),
        source,
    };
    let mut conn =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path).read_only(true))
            .await
            .map_err(|e| open_err(e.into()))?;
    let has_table: bool = sqlx::query_scalar(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut conn)
    .await?;
    let applied = match has_table {
        true => sqlx::query_scalar(APPLIED).fetch_all(&mut conn).await?,
        false => Vec::new(),
    };
    conn.close().await?;
    let dir = parent_dir(path);
    let not_writable = not_writable(path).or_else(|| {
        not_writable(dir).map(|why| format!("{why} (its -wal and -shm files go there)"))
    });
    Ok(compare(true, migrator, applied, not_writable))
}

/// Whether a missing file could be created: the nearest directory that exists on its
/// way must be writable (the pipeline creates the ones missing below it).
fn creatable(path: &Path) -> Option<String> {
    let mut dir = parent_dir(path);
    while !dir.exists() {
        match dir.parent() {
            Some(up) if !up.as_os_str().is_empty() => dir = up,
            _ => return not_writable(Path::new(".")),
        }
    }
    if !dir.is_dir() {
        return Some(format!("{} is not a directory", dir.display()));
    }
    not_writable(dir)
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Why this process may not write `path`, as the kernel would judge it (owner, mode,
/// read-only mount), or `None`.
fn not_writable(path: &Path) -> Option<String> {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK)
        .err()
        .map(|e| format!("{} is not writable: {e}", path.display()))
}

fn compare(
    exists: bool,
    migrator: &Migrator,
    applied: Vec<i64>,
    not_writable: Option<String>,
) -> DatabaseProbe {
    let known: BTreeSet<i64> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    let applied: BTreeSet<i64> = applied.into_iter().collect();
    DatabaseProbe {
        exists,
        applied: applied.intersection(&known).count(),
        pending: known.difference(&applied).count(),
        unknown: applied.difference(&known).count(),
        not_writable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_file_is_all_pending_and_an_opened_one_all_applied() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/dir/a.db");
        let options = StorageOptions::new(&file);
        let before = probe(&options).await.unwrap();
        assert!(!before.exists && before.applied == 0 && before.unknown == 0);
        assert!(
            before.pending > 0 && before.not_writable.is_none(),
            "{before:?}"
        );
        assert!(!file.exists(), "probing created the file");

        let storage = crate::Storage::open(&options).await.unwrap();
        storage.close().await;
        let after = probe(&options).await.unwrap();
        assert_eq!(
            after,
            DatabaseProbe {
                exists: true,
                applied: before.pending,
                pending: 0,
                unknown: 0,
                not_writable: None,
            }
        );

        let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&file))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'a newer version', 1, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        let newer = probe(&options).await.unwrap();
        assert_eq!(
            (newer.applied, newer.pending, newer.unknown),
            (after.applied, 0, 1)
        );
    }
}
