//! Writability, size and backups of the SQLite file.

use super::SqliteDb;
use crate::StorageError;

impl SqliteDb {
    pub(crate) async fn check_writable(&self) -> Result<(), StorageError> {
        let tx = self.sql_writer.begin_with("BEGIN IMMEDIATE").await?;
        tx.rollback().await?;
        Ok(())
    }

    pub(crate) async fn size_bytes(&self) -> Result<u64, StorageError> {
        let len = |suffix: &str| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).map_or(0, |m| m.len())
        };
        Ok(len("") + len("-wal"))
    }

    pub(crate) async fn backup_to(&self, target: &std::path::Path) -> Result<(), StorageError> {
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
