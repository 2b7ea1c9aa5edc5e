//! Retention chunks on SQLite.

use chrono::{DateTime, Utc};

use super::SqliteDb;
use crate::StorageError;
use crate::retention::{RetentionClass, Target};

impl SqliteDb {
    pub(crate) async fn delete_expired_chunk(
        &self,
        class: RetentionClass,
        cutoff: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Vec<(&'static str, u64)>, StorageError> {
        let mut out = Vec::new();
        for target in class.targets(cutoff) {
            let Target { table, row_key, .. } = target;
            let sql = format!(
                "DELETE FROM {table} WHERE ({row_key}) IN ({})",
                target.expired_rows(target.column, "?1", "?2")
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&target.below)
                .bind(i64::from(chunk))
                .execute(&self.sql_writer)
                .await?;
            out.push((table, done.rows_affected()));
        }
        Ok(out)
    }
}
