//! Retention chunks on PostgreSQL.

use chrono::{DateTime, Utc};

use super::PgDb;
use super::aggregation::period_type;
use crate::StorageError;
use crate::retention::RetentionClass;
use crate::tables::AGG_TABLES;

/// The PostgreSQL type a cutoff is cast to for `table`'s period column.
fn cutoff_type(table: &str) -> &'static str {
    match table {
        "analytics_events" | "agg_dirty_hours" => "timestamptz",
        "event_tallies_hour" => "text",
        _ => AGG_TABLES
            .iter()
            .find(|t| t.name == table)
            .map_or("text", |t| period_type(t.granularity)),
    }
}

impl PgDb {
    pub(crate) async fn delete_expired_chunk(
        &self,
        class: RetentionClass,
        cutoff: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Vec<(&'static str, u64)>, StorageError> {
        let mut out = Vec::new();
        for target in class.targets(cutoff) {
            let column = if target.column == "timestamp" {
                "\"timestamp\""
            } else {
                target.column
            };
            let rows = crate::retention::Target {
                row_key: "ctid",
                ..target
            };
            let sql = format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY({select}))",
                table = rows.table,
                select =
                    rows.expired_rows(column, &format!("$1::{}", cutoff_type(rows.table)), "$2"),
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&rows.below)
                .bind(i64::from(chunk))
                .execute(&self.pool)
                .await?;
            out.push((rows.table, done.rows_affected()));
        }
        Ok(out)
    }
}
