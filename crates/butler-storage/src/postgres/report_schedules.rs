//! Report schedule fire times on PostgreSQL.

use chrono::{DateTime, Utc};

use super::{PgDb, instant, text};
use crate::StorageError;

impl PgDb {
    pub(crate) async fn last_report_fire(
        &self,
        schedule: &str,
    ) -> Result<Option<String>, StorageError> {
        let fire: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT last_fire FROM report_schedule_fires WHERE schedule = $1")
                .bind(schedule)
                .fetch_optional(&self.pool)
                .await?;
        Ok(fire.map(text))
    }

    pub(crate) async fn claim_report_fire(
        &self,
        schedule: &str,
        fire: &str,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "INSERT INTO report_schedule_fires (schedule, last_fire) VALUES ($1, $2) \
             ON CONFLICT (schedule) DO UPDATE SET last_fire = excluded.last_fire \
             WHERE report_schedule_fires.last_fire < excluded.last_fire",
        )
        .bind(schedule)
        .bind(instant(fire)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
