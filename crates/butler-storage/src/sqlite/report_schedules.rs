//! Report schedule fire times on SQLite.

use super::SqliteDb;
use crate::StorageError;

impl SqliteDb {
    pub(crate) async fn last_report_fire(
        &self,
        schedule: &str,
    ) -> Result<Option<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT last_fire FROM report_schedule_fires WHERE schedule = ?")
                .bind(schedule)
                .fetch_optional(&self.sql_readers)
                .await?,
        )
    }

    pub(crate) async fn claim_report_fire(
        &self,
        schedule: &str,
        fire: &str,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "INSERT INTO report_schedule_fires (schedule, last_fire) VALUES (?1, ?2) \
             ON CONFLICT (schedule) DO UPDATE SET last_fire = excluded.last_fire \
             WHERE report_schedule_fires.last_fire < excluded.last_fire",
        )
        .bind(schedule)
        .bind(fire)
        .execute(&self.sql_writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
