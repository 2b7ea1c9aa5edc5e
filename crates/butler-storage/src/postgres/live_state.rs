//! Pruning live state on PostgreSQL, a window of keys per transaction.

use chrono::{DateTime, Utc};

use super::PgDb;
use crate::StorageError;
use crate::live_state::{LiveKey, LiveTable, PruneSql, PruneStep};
use crate::queries::Dialect;

/// The advisory lock pruning takes exclusively and ingest shared, each first in its
/// transaction: an ingest transaction reads the horizon either before a prune starts
/// (and the prune waits for its commit) or after the prune committed.
pub(crate) const LIVE_STATE_LOCK: i64 = 0x6c69_7665_5f73_7461; // "live_sta"

impl PgDb {
    pub(crate) async fn prune_live_state(
        &self,
        table: LiveTable,
        cutoff: DateTime<Utc>,
        after: Option<&LiveKey>,
        window: u32,
    ) -> Result<PruneStep, StorageError> {
        let sql = PruneSql::new(table, Dialect::Postgres, after);
        let (after_property, after_key) = after.cloned().unzip();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LIVE_STATE_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE live_state_horizon SET pruned_before = GREATEST(pruned_before, $1) WHERE id = 1",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let last: Option<LiveKey> = sqlx::query_as(sqlx::AssertSqlSafe(sql.window_end()))
            .bind(&after_property)
            .bind(&after_key)
            .bind(i64::from(window.max(1)) - 1)
            .fetch_optional(&mut *tx)
            .await?;
        let (last_property, last_key) = last.clone().unzip();
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.delete(last.is_none())))
            .bind(&after_property)
            .bind(&after_key)
            .bind(&last_property)
            .bind(&last_key)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PruneStep {
            deleted: done.rows_affected(),
            next: last,
        })
    }
}
