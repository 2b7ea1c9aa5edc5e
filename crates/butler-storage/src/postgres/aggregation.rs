//! The aggregator's reads and writes on PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use butler_events::calendar::hour_key;
use butler_events::{EventType, Granularity};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::{Postgres, Row, Transaction};

use super::{PgDb, instant, text};
use crate::StorageError;
use crate::aggregation::{
    AggEvent, JobRunRecord, JobStatus, Lease, LeaseFence, PendingBucket, WaitingForJob,
};
use crate::tables::{AggTable, BucketRows, Cell, Kind};

/// The PostgreSQL type of a period column: an hour is an instant, a day or a week its
/// local date, a month its `YYYY-MM` key.
pub(crate) fn period_type(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::Hour => "timestamptz",
        Granularity::Day | Granularity::Week => "date",
        Granularity::Month => "text",
    }
}

/// The INSERT of one row of `table`, each value cast to its column's type.
fn insert_statement(table: &AggTable) -> String {
    let columns: Vec<&str> = table.columns().collect();
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let cast = if *column == table.period_column {
                period_type(table.granularity)
            } else {
                match table.find_measure(column).map(|m| m.kind) {
                    Some(Kind::Integer) => "int8",
                    Some(Kind::Real) => "float8",
                    Some(Kind::Json) => "jsonb",
                    None => "text",
                }
            };
            format!("${}::{cast}", i + 1)
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        columns.join(", "),
        values.join(", ")
    )
}

impl PgDb {
    pub(crate) async fn fetch_agg_events(
        &self,
        property_id: &str,
        start: &str,
        end: &str,
        types: &[EventType],
    ) -> Result<Vec<AggEvent>, StorageError> {
        let types: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        // Rows are read into compact events one at a time: a million-event bucket
        // never holds the driver's row objects all at once.
        let mut rows = sqlx::query(
            "SELECT id, event_type, \"timestamp\", channel, staff_id, conversation_id, value, duration_ms, \
             CASE WHEN jsonb_typeof(metadata -> 'intent') = 'string' THEN metadata ->> 'intent' END AS intent \
             FROM analytics_events \
             WHERE property_id = $1 AND \"timestamp\" >= $2 AND \"timestamp\" < $3 AND event_type = ANY($4)",
        )
        .bind(property_id)
        .bind(instant(start)?)
        .bind(instant(end)?)
        .bind(&types)
        .fetch(&self.pool);
        let mut events = Vec::new();
        while let Some(r) = rows.try_next().await? {
            let Some(event_type) = EventType::parse(r.try_get::<&str, _>(1)?) else {
                continue;
            };
            events.push(AggEvent {
                id: r.try_get(0)?,
                event_type,
                timestamp_ms: r.try_get::<DateTime<Utc>, _>(2)?.timestamp_millis(),
                channel: r.try_get(3)?,
                staff_id: r.try_get(4)?,
                conversation_id: r.try_get(5)?,
                value: r.try_get(6)?,
                duration_ms: r.try_get(7)?,
                intent: r.try_get(8)?,
            });
        }
        Ok(events)
    }

    pub(crate) async fn earliest_conversation_starts(
        &self,
        property_id: &str,
        conversation_ids: &[&str],
    ) -> Result<HashMap<String, i64>, StorageError> {
        if conversation_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT conversation_id, min(\"timestamp\") FROM analytics_events \
             WHERE event_type = 'conversation.started' AND property_id = $1 \
             AND conversation_id = ANY($2) GROUP BY conversation_id",
        )
        .bind(property_id)
        .bind(conversation_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(c, t)| (c, t.timestamp_millis()))
            .collect())
    }

    pub(crate) async fn dirty_hours_after(
        &self,
        after: i64,
    ) -> Result<(Vec<(String, String)>, i64), StorageError> {
        let rows: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT property_id, hour_start, change_seq FROM agg_dirty_hours WHERE change_seq > $1",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        let max = rows.iter().map(|r| r.2).max().unwrap_or(after);
        Ok((
            rows.into_iter().map(|(p, h, _)| (p, hour_key(h))).collect(),
            max,
        ))
    }

    pub(crate) async fn waiting_for_job(
        &self,
        job: &str,
        property: &str,
    ) -> Result<WaitingForJob, StorageError> {
        let queued: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT period_key, bucket_start, bucket_end FROM agg_pending_buckets \
             WHERE job = $1 AND property_id = $2",
        )
        .bind(job)
        .bind(property)
        .fetch_all(&self.pool)
        .await?;
        let cursor = self.job_dirty_seq(job).await?;
        let hours: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT hour_start, change_seq FROM agg_dirty_hours \
             WHERE property_id = $1 AND change_seq > $2",
        )
        .bind(property)
        .bind(cursor)
        .fetch_all(&self.pool)
        .await?;
        let queued = queued
            .into_iter()
            .map(|(period_key, start, end)| PendingBucket {
                property_id: property.to_owned(),
                period_key,
                start: text(start),
                end: text(end),
            })
            .collect();
        Ok(WaitingForJob {
            queued,
            dirty_hours: hours
                .into_iter()
                .map(|(h, seq)| (hour_key(h), seq))
                .collect(),
            cursor,
        })
    }

    pub(crate) async fn job_dirty_seq(&self, job: &str) -> Result<i64, StorageError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT dirty_seq FROM agg_job_state WHERE job = $1")
                .bind(job)
                .fetch_optional(&self.pool)
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
        let mut properties = Vec::with_capacity(buckets.len());
        let mut keys = Vec::with_capacity(buckets.len());
        let mut starts = Vec::with_capacity(buckets.len());
        let mut ends = Vec::with_capacity(buckets.len());
        for b in buckets {
            properties.push(b.property_id.as_str());
            keys.push(b.period_key.as_str());
            starts.push(instant(&b.start)?);
            ends.push(instant(&b.end)?);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agg_pending_buckets (job, property_id, period_key, bucket_start, bucket_end) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(job)
        .bind(&properties)
        .bind(&keys)
        .bind(&starts)
        .bind(&ends)
        .execute(&mut *tx)
        .await?;
        if let Some(seq) = dirty_seq {
            sqlx::query(
                "INSERT INTO agg_job_state (job, dirty_seq) VALUES ($1, $2) \
                 ON CONFLICT (job) DO UPDATE SET dirty_seq = GREATEST(agg_job_state.dirty_seq, excluded.dirty_seq)",
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
        let rows: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT property_id, period_key, bucket_start, bucket_end FROM agg_pending_buckets \
             WHERE job = $1 AND bucket_end <= $2 ORDER BY bucket_start, property_id COLLATE \"C\"",
        )
        .bind(job)
        .bind(instant(now)?)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(property_id, period_key, start, end)| PendingBucket {
                property_id,
                period_key,
                start: text(start),
                end: text(end),
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
        let now = instant(now)?;
        let mut tx = self.pool.begin().await?;
        let mut watermark: Option<DateTime<Utc>> = None;
        let mut statements: Option<(&str, String, String)> = None;
        for (bucket, rows) in buckets {
            let table = rows.table;
            let (delete, insert) = match &statements {
                Some((name, delete, insert)) if *name == table.name => (delete, insert),
                _ => {
                    let built = statements.insert((
                        table.name,
                        format!(
                            "DELETE FROM {} WHERE {} = $1::{} AND property_id = $2",
                            table.name,
                            table.period_column,
                            period_type(table.granularity)
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
            let end = instant(&bucket.end)?;
            if end <= now && watermark.is_none_or(|w| end > w) {
                watermark = Some(end);
            }
        }
        if let Some(end) = watermark {
            sqlx::query(
                "INSERT INTO agg_job_state (job, watermark) VALUES ($1, $2) ON CONFLICT (job) DO UPDATE SET \
                 watermark = GREATEST(agg_job_state.watermark, excluded.watermark)",
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
        let mut tx = self.pool.begin().await?;
        for bucket in buckets {
            dequeue(&mut tx, job, bucket).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn record_job_run(&self, run: &JobRunRecord) -> Result<(), StorageError> {
        let finished = instant(&run.finished_at)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agg_job_runs (job, trigger, started_at, finished_at, periods_recomputed, \
             rows_written, duration_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&run.job)
        .bind(&run.trigger)
        .bind(instant(&run.started_at)?)
        .bind(finished)
        .bind(run.periods_recomputed)
        .bind(run.rows_written)
        .bind(run.duration_ms)
        .bind(&run.error)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO agg_job_state (job, last_run_at, last_success_at, last_error) \
             VALUES ($1, $2, CASE WHEN $3::text IS NULL THEN $2 END, $3) \
             ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at, \
             last_success_at = coalesce(excluded.last_success_at, agg_job_state.last_success_at), \
             last_error = excluded.last_error",
        )
        .bind(&run.job)
        .bind(finished)
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
             FROM agg_job_state s ORDER BY s.job COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        let time =
            |r: &sqlx::postgres::PgRow, column: &str| -> Result<Option<String>, sqlx::Error> {
                Ok(r.try_get::<Option<DateTime<Utc>>, _>(column)?.map(text))
            };
        rows.iter()
            .map(|r| {
                Ok(JobStatus {
                    job: r.try_get("job")?,
                    last_run_at: time(r, "last_run_at")?,
                    last_success_at: time(r, "last_success_at")?,
                    watermark: time(r, "watermark")?,
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
             VALUES ($1, $2, {LATER}, clock_timestamp()) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
             since = CASE WHEN agg_job_leases.holder = excluded.holder THEN agg_job_leases.since \
                          ELSE excluded.since END \
             WHERE agg_job_leases.holder = $2 OR agg_job_leases.expires_at <= clock_timestamp()"
        )))
        .bind(name)
        .bind(holder)
        .bind(millis(ttl))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let held = self.leases().await?.into_iter().find(|l| l.name == name);
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
            "UPDATE agg_job_leases SET holder = $4, since = clock_timestamp(), expires_at = {LATER} \
             WHERE job = $1 AND holder = $2"
        )))
        .bind(name)
        .bind(from)
        .bind(millis(ttl))
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        renew(&self.pool, name, holder, ttl).await
    }

    pub(crate) async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM agg_job_leases WHERE job = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn leases(&self) -> Result<Vec<Lease>, StorageError> {
        let rows: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT job, holder, since, expires_at FROM agg_job_leases ORDER BY job COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, holder, since, expires_at)| Lease {
                name,
                holder,
                since: text(since),
                expires_at: text(expires_at),
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
            "SELECT property_id FROM agg_dirty_hours WHERE hour_start >= $1::timestamptz \
             AND hour_start < $2::timestamptz GROUP BY property_id ORDER BY property_id COLLATE \"C\"",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?)
    }
}

async fn dequeue(
    tx: &mut Transaction<'_, Postgres>,
    job: &str,
    bucket: &PendingBucket,
) -> Result<(), StorageError> {
    sqlx::query(
        "DELETE FROM agg_pending_buckets WHERE job = $1 AND property_id = $2 AND period_key = $3",
    )
    .bind(job)
    .bind(&bucket.property_id)
    .bind(&bucket.period_key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `$3` milliseconds from now by the server's clock, read when the statement runs
/// (`now()` would be its transaction's start).
const LATER: &str = "clock_timestamp() + $3 * interval '1 millisecond'";

/// `ttl` in whole milliseconds, the unit of [`LATER`].
fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// As its transaction's last statement, so that the lease runs `ttl` from the commit
/// however long the transaction took: renews the lease `fence` names, or fails with
/// [`StorageError::LeaseLost`] (the transaction then rolls back) when another process
/// holds it.
async fn renew_fence(
    tx: &mut Transaction<'_, Postgres>,
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
    db: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StorageError> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE agg_job_leases SET expires_at = {LATER} WHERE job = $1 AND holder = $2"
    )))
    .bind(name)
    .bind(holder)
    .bind(millis(ttl))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
