//! What `/readyz`, the database-size gauge and backups need.

use std::sync::atomic::Ordering;

use crate::{Storage, StorageError};

impl Storage {
    /// Takes and releases the write lock, proving the file is writable now.
    ///
    /// # Errors
    /// The database error that stands in the way (busy, read-only, IO).
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        let tx = self.sql_writer.begin_with("BEGIN IMMEDIATE").await?;
        tx.rollback().await?;
        Ok(())
    }

    /// Whether the last write failed for another reason than a busy lock (disk full,
    /// IO error, read-only file).
    pub fn write_failing(&self) -> bool {
        self.write_failing.load(Ordering::Relaxed)
    }

    /// Bytes on disk: the database file plus its write-ahead log.
    pub fn size_bytes(&self) -> u64 {
        let len = |suffix: &str| {
            let mut name = self.path().as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).map_or(0, |m| m.len())
        };
        len("") + len("-wal")
    }
}

impl Storage {
    /// Writes a consistent copy of the whole database to `target` while ingest goes on
    /// (`VACUUM INTO` reads one snapshot). The copy holds every transaction committed
    /// before it started, and is compact.
    ///
    /// # Errors
    /// When `target` exists already, or cannot be written.
    pub async fn backup_to(&self, target: &std::path::Path) -> Result<(), StorageError> {
        if target.exists() {
            return Err(StorageError::BackupTargetExists(target.to_path_buf()));
        }
        let mut conn = self.sql_readers.acquire().await?;
        sqlx::query("VACUUM INTO ?")
            .bind(target.to_string_lossy().into_owned())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
