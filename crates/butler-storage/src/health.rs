//! What `/readyz`, the database-size gauge and backups need: each asks the file or
//! the server something of its own, so each backend answers in its own way here.

use std::sync::atomic::Ordering;

use crate::sql::Db;
use crate::{Storage, StorageError};

impl Storage {
    /// Proves the database takes writes now: on SQLite, takes and releases the write
    /// lock; on PostgreSQL, asks whether the server is a writable primary.
    ///
    /// # Errors
    /// The database error that stands in the way (busy, read-only, IO, unreachable).
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        match &self.backend {
            Db::Sqlite(db) => {
                let tx = db.sql_writer.begin_with("BEGIN IMMEDIATE").await?;
                tx.rollback().await?;
                Ok(())
            }
            Db::Postgres(db) => {
                // Fails on an unreachable server; false on a read-only standby.
                let writable: bool = sqlx::query_scalar(
                    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
                )
                .fetch_one(&db.pool)
                .await?;
                writable.then_some(()).ok_or(StorageError::ReadOnly)
            }
        }
    }

    /// Whether the last write failed for another reason than a busy lock (disk full,
    /// IO error, read-only file, connection lost).
    pub fn write_failing(&self) -> bool {
        self.write_failing.load(Ordering::Relaxed)
    }

    /// Bytes on disk: the SQLite file plus its write-ahead log, or the PostgreSQL
    /// database's size.
    ///
    /// # Errors
    /// When the size cannot be read.
    pub async fn size_bytes(&self) -> Result<u64, StorageError> {
        match &self.backend {
            Db::Sqlite(db) => {
                let len = |suffix: &str| {
                    let mut name = db.path.as_os_str().to_owned();
                    name.push(suffix);
                    std::fs::metadata(name).map_or(0, |m| m.len())
                };
                Ok(len("") + len("-wal"))
            }
            Db::Postgres(db) => {
                let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&db.pool)
                    .await?;
                Ok(u64::try_from(bytes).unwrap_or_default())
            }
        }
    }

    /// Writes a consistent copy of the whole SQLite database to `target` while ingest
    /// goes on (SQLite's `VACUUM INTO` reads one snapshot). The copy holds every
    /// transaction committed before it started, and is compact.
    ///
    /// # Errors
    /// When `target` exists already, or cannot be written; on PostgreSQL, whose
    /// backups are its own (`pg_dump`), always.
    pub async fn backup_to(&self, target: &std::path::Path) -> Result<(), StorageError> {
        let Db::Sqlite(db) = &self.backend else {
            return Err(StorageError::Unsupported(
                "backup writes a copy of the SQLite file; on PostgreSQL use pg_dump (or your \
                 server's own backups)",
            ));
        };
        if target.exists() {
            return Err(StorageError::BackupTargetExists(target.to_path_buf()));
        }
        let mut conn = db.sql_readers.acquire().await?;
        sqlx::query("VACUUM INTO ?")
            .bind(target.to_string_lossy().into_owned())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
