//! Retention: deleting the rows past each table's retention, by each table's own
//! period column (seed defect 5), a chunk at a time so that ingest never waits long
//! for the write lock.

use butler_events::calendar::hour_key;
use butler_events::{EventTime, Granularity};
use chrono::{DateTime, Utc};

use crate::sql::{Dialect, Param, Role};
use crate::tables::AGG_TABLES;
use crate::tallies::tally_hour_key;
use crate::{Storage, StorageError};

/// What one retention setting covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionClass {
    /// The raw events, and what ingest keeps beside them: the late-data bookkeeping
    /// and the hour tallies.
    RawEvents,
    /// The aggregate tables of one granularity.
    Aggregates(Granularity),
}

/// A table and the key form of a cutoff in its period column.
pub(crate) struct Target {
    pub(crate) table: &'static str,
    pub(crate) column: &'static str,
    /// Rows whose period column is below this go.
    pub(crate) below: String,
    /// The granularity whose period type the column has, or `None` for text.
    pub(crate) period: Option<Granularity>,
    /// The columns that name a row on SQLite: `rowid`, or the key of a WITHOUT ROWID
    /// table (PostgreSQL names every row by its `ctid`).
    pub(crate) row_key: &'static str,
    /// Whether an index leads with `(property_id, column)`: then a chunk is found
    /// property by property through it (see [`Target::expired_rows`]) instead of by
    /// scanning the table, which for the raw events meant reading all of them at every
    /// run, however little was past retention.
    pub(crate) by_property: bool,
}

impl Target {
    /// The `DELETE` of up to `$2` rows whose period is below `$1`.
    pub(crate) fn delete(&self, d: Dialect) -> String {
        let table = self.table;
        match d {
            Dialect::Sqlite => format!(
                "DELETE FROM {table} WHERE ({}) IN ({})",
                self.row_key,
                self.expired_rows(d, self.row_key)
            ),
            Dialect::Postgres => format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY({}))",
                self.expired_rows(d, "ctid")
            ),
        }
    }

    /// The `SELECT` of the row keys of up to `$2` rows whose period is below `$1`. By
    /// property, the properties are found by seeking the next one through the index
    /// (a skip scan: one seek per property).
    pub(crate) fn expired_rows(&self, d: Dialect, row_key: &str) -> String {
        let table = self.table;
        let column = format!("\"{}\"", self.column);
        let below = self
            .period
            .map_or_else(|| "$1".to_owned(), |g| d.period_param(1, g));
        let limit = "$2";
        if self.by_property {
            format!(
                "SELECT {row_key} FROM {table} WHERE property_id IN (\
                 WITH RECURSIVE p(id) AS (SELECT (SELECT min(property_id) FROM {table}) \
                 UNION ALL SELECT (SELECT min(property_id) FROM {table} WHERE property_id > p.id) \
                 FROM p WHERE p.id IS NOT NULL) SELECT id FROM p WHERE id IS NOT NULL) \
                 AND {column} < {below} LIMIT {limit}"
            )
        } else {
            format!("SELECT {row_key} FROM {table} WHERE {column} < {below} LIMIT {limit}")
        }
    }
}

impl RetentionClass {
    /// The tables this class covers, each with the cutoff in its own key form. For the
    /// raw class, the per-hour tables keep the hour holding the cutoff, so no tally or
    /// dirty hour is deleted while raw events of its hour remain.
    pub(crate) fn targets(self, cutoff: DateTime<Utc>) -> Vec<Target> {
        match self {
            RetentionClass::RawEvents => vec![
                Target {
                    table: "analytics_events",
                    column: "timestamp",
                    below: EventTime::from_datetime(&cutoff).to_string(),
                    period: Some(Granularity::Hour),
                    row_key: "rowid",
                    by_property: true,
                },
                Target {
                    table: "agg_dirty_hours",
                    column: "hour_start",
                    below: hour_key(cutoff),
                    period: Some(Granularity::Hour),
                    row_key: "property_id, hour_start",
                    by_property: true,
                },
                Target {
                    table: "event_tallies_hour",
                    column: "hour",
                    below: tally_hour_key(cutoff),
                    period: None,
                    row_key: "rowid",
                    by_property: true,
                },
            ],
            RetentionClass::Aggregates(granularity) => AGG_TABLES
                .iter()
                .filter(|t| t.granularity == granularity)
                .map(|t| Target {
                    table: t.name,
                    column: t.period_column,
                    below: granularity.cutoff_key(cutoff),
                    period: Some(granularity),
                    row_key: "rowid",
                    by_property: false,
                })
                .collect(),
        }
    }
}

impl Storage {
    /// Deletes up to `chunk` rows of each table of `class` whose period began before
    /// `cutoff` (compared in each period column's own form); returns rows deleted per
    /// table. Called until it returns zeros, so ingest never waits long.
    ///
    /// # Errors
    /// Any database error.
    pub async fn delete_expired_chunk(
        &self,
        class: RetentionClass,
        cutoff: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Vec<(&'static str, u64)>, StorageError> {
        let d = self.backend.dialect();
        let mut out = Vec::new();
        for target in class.targets(cutoff) {
            let params = [Param::Text(&target.below), Param::Int(i64::from(chunk))];
            let deleted = self
                .backend
                .execute(Role::Write, target.delete(d), &params)
                .await?;
            out.push((target.table, deleted));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Storage, StorageOptions};

    /// Finding the raw class's expired rows reads index ranges, never the whole table:
    /// on a large raw table a scan read every event at every run.
    #[tokio::test]
    async fn raw_retention_seeks_each_property_instead_of_scanning() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
            .await
            .unwrap();
        for target in RetentionClass::RawEvents.targets(Utc::now()) {
            let sql = format!(
                "EXPLAIN QUERY PLAN {}",
                target.expired_rows(Dialect::Sqlite, target.row_key)
            );
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&target.below)
                .bind(10)
                .fetch_all(&storage.sqlite().sql_readers)
                .await
                .unwrap();
            let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
            assert!(
                details.iter().all(|d| !d.starts_with("SCAN")
                    || d.starts_with("SCAN p")
                    || d.starts_with("SCAN CONSTANT")),
                "{}: {details:?}",
                target.table
            );
        }
    }
}
