//! Pruning live state on SQLite, a window of keys per transaction.

use butler_events::EventTime;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteDb;
use crate::StorageError;
use crate::live_state::{LiveKey, LiveTable, PruneSql, PruneStep};
use crate::queries::Dialect;

impl SqliteDb {
    pub(crate) async fn prune_live_state(
        &self,
        table: LiveTable,
        cutoff: DateTime<Utc>,
        after: Option<&LiveKey>,
        window: u32,
    ) -> Result<PruneStep, StorageError> {
        let sql = PruneSql::new(table, Dialect::Sqlite, after);
        let cutoff = EventTime::from_datetime(&cutoff).to_string();
        let (after_property, after_key) = after.cloned().unzip();
        let mut tx = self.sql_writer.begin().await?;
        sqlx::query(
            "UPDATE live_state_horizon SET pruned_before = max(coalesce(pruned_before, ''), ?1) \
             WHERE id = 1",
        )
        .bind(&cutoff)
        .execute(&mut *tx)
        .await?;
        let last = sqlx::query(sqlx::AssertSqlSafe(sql.window_end()))
            .bind(&after_property)
            .bind(&after_key)
            .bind(i64::from(window.max(1)) - 1)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| -> Result<LiveKey, sqlx::Error> { Ok((r.try_get(0)?, r.try_get(1)?)) })
            .transpose()?;
        let (last_property, last_key) = last.clone().unzip();
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.delete(last.is_none())))
            .bind(&after_property)
            .bind(&after_key)
            .bind(&last_property)
            .bind(&last_key)
            .bind(&cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PruneStep {
            deleted: done.rows_affected(),
            next: last,
        })
    }
}
