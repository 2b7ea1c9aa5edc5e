//! Writability and size of the PostgreSQL database. Backups are PostgreSQL's own
//! (`pg_dump`), not the pipeline's.

use super::PgDb;
use crate::StorageError;

impl PgDb {
    pub(crate) async fn check_writable(&self) -> Result<(), StorageError> {
        // Fails on an unreachable server; false on a read-only standby.
        let writable: bool = sqlx::query_scalar(
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
        )
        .fetch_one(&self.pool)
        .await?;
        if writable {
            Ok(())
        } else {
            Err(StorageError::ReadOnly)
        }
    }

    pub(crate) async fn size_bytes(&self) -> Result<u64, StorageError> {
        let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(bytes).unwrap_or_default())
    }

    pub(crate) async fn backup_to(&self, _target: &std::path::Path) -> Result<(), StorageError> {
        Err(StorageError::Unsupported(
            "backup writes a copy of the SQLite file; on PostgreSQL use pg_dump (or your \
             server's own backups)",
        ))
    }
}
