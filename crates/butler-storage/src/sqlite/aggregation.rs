//! The aggregator's reads and writes on SQLite.

use std::collections::HashMap;
use std::time::Duration;

use butler_events::{EventType, Granularity};
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, Transaction};

use super::SqliteDb;
use super::row_readers::text;
use crate::StorageError;
use crate::aggregation::{
    AggEvent, JobRunRecord, JobStatus, Lease, LeaseFence, PendingBucket, WaitingForJob,
};
use crate::tables::{BucketRows, Cell};

fn parse_ms(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).map_or(0, |t| t.timestamp_millis())
}

impl SqliteDb {
    pub(crate) async fn fetch_agg_events(
        &self,
        property_id: &str,
        start: &str,
        end: &str,
        types: &[EventType],
    ) -> Result<Vec<AggEvent>, StorageError> {
        let types_json =
            serde_json::to_string(&types.iter().map(|t| t.as_str()).collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into());
        let params = [
            property_id.to_owned(),
            start.to_owned(),
            end.to_owned(),
            types_json,
        ];
        // Rows are read into compact events one at a time: a million-event bucket never
        // holds the driver's row objects all at once.
        self.row_readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, event_type, timestamp, channel, staff_id, conversation_id, value, duration_ms, \
                     CASE WHEN json_type(metadata, '$.intent') = 'text' THEN json_extract(metadata, '$.intent') END AS intent \
                     FROM analytics_events INDEXED BY idx_events_property_time \
                     WHERE property_id = ? AND timestamp >= ? AND timestamp < ? \
                     AND event_type IN (SELECT value FROM json_each(?))",
                )?;
                let mut rows = stmt.query(rusqlite::params_from_iter(&params))?;
                let mut events = Vec::new();
                while let Some(r) = rows.next()? {
                    let Some(event_type) = EventType::parse(text(r, 1)?) else {
                        continue;
                    };
                    events.push(AggEvent {
                        id: r.get(0)?,
                        event_type,
                        timestamp_ms: parse_ms(text(r, 2)?),
                        channel: r.get(3)?,
                        staff_id: r.get(4)?,
                        conversation_id: r.get(5)?,
                        value: r.get(6)?,
                        duration_ms: r.get(7)?,
                        intent: r.get(8)?,
                    });
                }
                Ok(events)
            })
            .await
    }

    pub(crate) async fn earliest_conversation_starts(
        &self,
        property_id: &str,
        conversation_ids: &[&str],
    ) -> Result<HashMap<String, i64>, StorageError> {
        if conversation_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = serde_json::to_string(conversation_ids).unwrap_or_else(|_| "[]".into());
        let property_id = property_id.to_owned();
        self.row_readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT conversation_id, min(timestamp) FROM analytics_events \
                     WHERE event_type = 'conversation.started' AND property_id = ? \
                     AND conversation_id IN (SELECT value FROM json_each(?)) GROUP BY conversation_id",
                )?;
                let mut rows = stmt.query(rusqlite::params![property_id, ids])?;
                let mut starts = HashMap::new();
                while let Some(r) = rows.next()? {
                    starts.insert(r.get(0)?, parse_ms(text(r, 1)?));
                }
                Ok(starts)
            })
            .await
    }

    pub(crate) async fn dirty_hours_after(
        &self,
        after: i64,
    ) -> Result<(Vec<(String, String)>, i64), StorageError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT property_id, hour_start, change_seq FROM agg_dirty_hours WHERE change_seq > ?",
        )
        .bind(after)
        .fetch_all(&self.sql_readers)
        .await?;
        let max = rows.iter().map(|r| r.2).max().unwrap_or(after);
        Ok((rows.into_iter().map(|(p, h, _)| (p, h)).collect(), max))
    }

    pub(crate) async fn waiting_for_job(
        &self,
        job: &str,
        property: &str,
    ) -> Result<WaitingForJob, StorageError> {
        let queued: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT period_key, bucket_start, bucket_end FROM agg_pending_buckets \
             WHERE job = ? AND property_id = ?",
        )
        .bind(job)
        .bind(property)
        .fetch_all(&self.sql_readers)
        .await?;
        let cursor = self.job_dirty_seq(job).await?;
        let dirty_hours: Vec<(String, i64)> = sqlx::query_as(
            "SELECT hour_start, change_seq FROM agg_dirty_hours \
             WHERE property_id = ? AND change_seq > ?",
        )
        .bind(property)
        .bind(cursor)
        .fetch_all(&self.sql_readers)
        .await?;
        let queued = queued
            .into_iter()
            .map(|(period_key, start, end)| PendingBucket {
                property_id: property.to_owned(),
                period_key,
                start,
                end,
            })
            .collect();
        Ok(WaitingForJob {
            queued,
            dirty_hours,
            cursor,
        })
    }

    pub(crate) async fn job_dirty_seq(&self, job: &str) -> Result<i64, StorageError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT dirty_seq FROM agg_job_state WHERE job = ?")
                .bind(job)
                .fetch_optional(&self.sql_writer)
                .await?;
        Ok(seq.unwrap_or(0))
    }

    pub(crate) async fn enqueue_buckets(
        &self,
        job: &str,
        buckets: &[PendingBucket],
        dirty_seq: Option<i64>,
        fence: Option<&LeaseFence>,
    ) -> Result<(), StorageError> {
        let mut tx = self.sql_writer.begin_with("BEGIN IMMEDIATE").await?;
        for b in buckets {
            sqlx::query(
                "INSERT OR IGNORE INTO agg_pending_buckets (job, property_id, period_key, bucket_start, bucket_end) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(job)
            .bind(&b.property_id)
            .bind(&b.period_key)
            .bind(&b.start)
            .bind(&b.end)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(seq) = dirty_seq {
            sqlx::query(
                "INSERT INTO agg_job_state (job, dirty_seq) VALUES (?, ?) \
                 ON CONFLICT (job) DO UPDATE SET dirty_seq = max(dirty_seq, excluded.dirty_seq)",
            )
            .bind(job)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        renew_fence(&mut tx, fence).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn closed_pending_buckets(
        &self,
        job: &str,
        now: &str,
    ) -> Result<Vec<PendingBucket>, StorageError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT property_id, period_key, bucket_start, bucket_end FROM agg_pending_buckets \
             WHERE job = ? AND bucket_end <= ? ORDER BY bucket_start, property_id",
        )
        .bind(job)
        .bind(now)
        .fetch_all(&self.sql_writer)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(property_id, period_key, start, end)| PendingBucket {
                property_id,
                period_key,
                start,
                end,
            })
            .collect())
    }

    pub(crate) async fn replace_buckets(
        &self,
        job: &str,
        buckets: &[(PendingBucket, BucketRows)],
        now: &str,
        fence: Option<&LeaseFence>,
    ) -> Result<(), StorageError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let mut tx = self.sql_writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut watermark: Option<&str> = None;
        let mut statements: Option<(&str, String, String)> = None;
        for (bucket, rows) in buckets {
            let table = rows.table;
            let (delete, insert) = match &statements {
                Some((name, delete, insert)) if *name == table.name => (delete, insert),
                _ => {
                    let built = statements.insert((
                        table.name,
                        format!(
                            "DELETE FROM {} WHERE {} = ? AND property_id = ?",
                            table.name, table.period_column
                        ),
                        insert_statement(table),
                    ));
                    (&built.1, &built.2)
                }
            };
            sqlx::query(sqlx::AssertSqlSafe(delete.clone()))
                .bind(&bucket.period_key)
                .bind(&bucket.property_id)
                .execute(&mut *tx)
                .await?;
            for row in &rows.rows {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
                for cell in row {
                    query = match cell {
                        Cell::Text(v) => query.bind(v),
                        Cell::Integer(v) => query.bind(v),
                        Cell::Real(v) => query.bind(v),
                    };
                }
                query.execute(&mut *tx).await?;
            }
            dequeue(&mut tx, job, bucket).await?;
            if bucket.end.as_str() <= now && watermark.is_none_or(|w| bucket.end.as_str() > w) {
                watermark = Some(&bucket.end);
            }
        }
        if let Some(end) = watermark {
            sqlx::query(
                "INSERT INTO agg_job_state (job, watermark) VALUES (?, ?) ON CONFLICT (job) DO UPDATE SET \
                 watermark = CASE WHEN watermark IS NULL OR excluded.watermark > watermark THEN excluded.watermark ELSE watermark END",
            )
            .bind(job)
            .bind(end)
            .execute(&mut *tx)
            .await?;
        }
        renew_fence(&mut tx, fence).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn drop_pending_buckets(
        &self,
        job: &str,
        buckets: &[PendingBucket],
    ) -> Result<(), StorageError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let mut tx = self.sql_writer.begin_with("BEGIN IMMEDIATE").await?;
        for bucket in buckets {
            dequeue(&mut tx, job, bucket).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn record_job_run(&self, run: &JobRunRecord) -> Result<(), StorageError> {
        let mut tx = self.sql_writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO agg_job_runs (job, trigger, started_at, finished_at, periods_recomputed, rows_written, duration_ms, error) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&run.job)
        .bind(&run.trigger)
        .bind(&run.started_at)
        .bind(&run.finished_at)
        .bind(run.periods_recomputed)
        .bind(run.rows_written)
        .bind(run.duration_ms)
        .bind(&run.error)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO agg_job_state (job, last_run_at, last_success_at, last_error) VALUES (?1, ?2, CASE WHEN ?3 IS NULL THEN ?2 END, ?3) \
             ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at, \
             last_success_at = coalesce(excluded.last_success_at, last_success_at), last_error = excluded.last_error",
        )
        .bind(&run.job)
        .bind(&run.finished_at)
        .bind(&run.error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn job_statuses(&self) -> Result<Vec<JobStatus>, StorageError> {
        let rows = sqlx::query(
            "SELECT s.job, s.last_run_at, s.last_success_at, s.watermark, s.last_error, \
             (SELECT count(*) FROM agg_pending_buckets p WHERE p.job = s.job) AS pending \
             FROM agg_job_state s ORDER BY s.job",
        )
        .fetch_all(&self.sql_readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobStatus {
                    job: r.try_get("job")?,
                    last_run_at: r.try_get("last_run_at")?,
                    last_success_at: r.try_get("last_success_at")?,
                    watermark: r.try_get("watermark")?,
                    last_error: r.try_get("last_error")?,
                    pending_buckets: r.try_get("pending")?,
                })
            })
            .collect()
    }

    pub(crate) async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Result<(), Lease>, StorageError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agg_job_leases (job, holder, expires_at, since) \
             VALUES (?1, ?2, {LATER}, {NOW}) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
             since = CASE WHEN agg_job_leases.holder = excluded.holder THEN agg_job_leases.since \
                          ELSE excluded.since END \
             WHERE agg_job_leases.holder = ?2 OR agg_job_leases.expires_at <= {NOW}"
        )))
        .bind(name)
        .bind(holder)
        .bind(seconds(ttl))
        .execute(&self.lease_writer)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let held = self.leases().await?.into_iter().find(|l| l.name == name);
        // Gone between the two statements: it is free now; the caller tries again.
        Ok(Err(held.unwrap_or_else(|| Lease::vacant(name))))
    }

    pub(crate) async fn take_over_lease(
        &self,
        name: &str,
        from: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE agg_job_leases SET holder = ?4, since = {NOW}, expires_at = {LATER} \
             WHERE job = ?1 AND holder = ?2"
        )))
        .bind(name)
        .bind(from)
        .bind(seconds(ttl))
        .bind(holder)
        .execute(&self.lease_writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        renew(&self.lease_writer, name, holder, ttl).await
    }

    pub(crate) async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM agg_job_leases WHERE job = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.lease_writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn leases(&self) -> Result<Vec<Lease>, StorageError> {
        let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT job, holder, since, expires_at FROM agg_job_leases ORDER BY job",
        )
        .fetch_all(&self.sql_readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, holder, since, expires_at)| Lease {
                name,
                holder,
                since: since.unwrap_or_default(),
                expires_at,
            })
            .collect())
    }

    pub(crate) async fn properties_with_events(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<String>, StorageError> {
        let (first, last) = Granularity::Hour.key_range(chrono_tz::UTC, start, end);
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT property_id FROM agg_dirty_hours WHERE hour_start >= ?1 \
             AND hour_start < ?2 ORDER BY property_id",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.sql_readers)
        .await?)
    }
}

async fn dequeue(
    tx: &mut Transaction<'_, Sqlite>,
    job: &str,
    bucket: &PendingBucket,
) -> Result<(), StorageError> {
    sqlx::query(
        "DELETE FROM agg_pending_buckets WHERE job = ? AND property_id = ? AND period_key = ?",
    )
    .bind(job)
    .bind(&bucket.property_id)
    .bind(&bucket.period_key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The INSERT of one row of `table`, its columns in definition order.
fn insert_statement(table: &crate::tables::AggTable) -> String {
    let columns: Vec<&str> = table.columns().collect();
    let marks = vec!["?"; columns.len()].join(", ");
    format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        table.name,
        columns.join(", ")
    )
}

/// Now, from SQLite's clock when the statement runs (it holds the write lock by then),
/// in the stored form of a time.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// `?3`, a modifier such as `+30.000 seconds` ([`seconds`]), from now.
const LATER: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?3)";

/// `ttl` as a date-function modifier.
fn seconds(ttl: Duration) -> String {
    format!("+{:.3} seconds", ttl.as_secs_f64())
}

/// As its transaction's last statement, so that the lease runs `ttl` from the commit
/// however long the transaction took: renews the lease `fence` names, or fails with
/// [`StorageError::LeaseLost`] (the transaction then rolls back) when another process
/// holds it.
async fn renew_fence(
    tx: &mut Transaction<'_, Sqlite>,
    fence: Option<&LeaseFence>,
) -> Result<(), StorageError> {
    if let Some(fence) = fence
        && !renew(&mut **tx, &fence.name, &fence.holder, fence.ttl).await?
    {
        return Err(StorageError::LeaseLost(fence.name.clone()));
    }
    Ok(())
}

/// Moves `name`'s expiry to `ttl` from now if `holder` still holds it.
async fn renew<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StorageError> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE agg_job_leases SET expires_at = {LATER} WHERE job = ?1 AND holder = ?2"
    )))
    .bind(name)
    .bind(holder)
    .bind(seconds(ttl))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
