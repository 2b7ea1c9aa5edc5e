//! What the aggregator needs: a bucket's events, the late-data queue, writing a bucket's
//! rows, job runs, leases and retention.

use std::collections::HashMap;

use butler_events::EventType;
use sqlx::{Row, Sqlite, Transaction};

use crate::aggregates::{AggEvent, BucketRows};
use crate::read::text;
use crate::{Storage, StorageError};

/// A bucket waiting to be recomputed by one job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PendingBucket {
    /// The property.
    pub property_id: String,
    /// The period column's value, e.g. `2026-11-24`.
    pub period_key: String,
    /// First instant inside, `YYYY-MM-DDTHH:MM:SS.sssZ`.
    pub start: String,
    /// First instant after, same form.
    pub end: String,
}

/// One run of a job, as recorded.
#[derive(Debug, Clone)]
pub struct JobRunRecord {
    /// Job name.
    pub job: String,
    /// `schedule`, `startup`, `cli`, `admin`.
    pub trigger: String,
    /// When it started (UTC, milliseconds).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// Buckets recomputed.
    pub periods_recomputed: i64,
    /// Rows written.
    pub rows_written: i64,
    /// Wall time.
    pub duration_ms: i64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A job's state, for status replies.
#[derive(Debug, Clone, Default)]
pub struct JobStatus {
    /// Job name.
    pub job: String,
    /// When it last ran.
    pub last_run_at: Option<String>,
    /// When it last succeeded.
    pub last_success_at: Option<String>,
    /// The end of the latest bucket it has written.
    pub watermark: Option<String>,
    /// The error of its last run, if that failed.
    pub last_error: Option<String>,
    /// Buckets queued for it.
    pub pending_buckets: i64,
}

/// The tables retention applies to, each with its own period column (seed defect 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionTable {
    /// `analytics_events.timestamp`.
    RawEvents,
    /// The two hourly tables, by `period_start`.
    Hourly,
    /// The three daily tables, by `period_date`.
    Daily,
    /// `agg_satisfaction_weekly.period_start`.
    Weekly,
    /// `agg_monthly_summary.period_month`.
    Monthly,
}

impl RetentionTable {
    /// `(table, period column)` pairs this retention class covers.
    pub fn tables(self) -> &'static [(&'static str, &'static str)] {
        match self {
            RetentionTable::RawEvents => &[
                ("analytics_events", "timestamp"),
                ("agg_dirty_hours", "hour_start"),
                ("event_tallies_hour", "hour"),
            ],
            RetentionTable::Hourly => &[
                ("agg_message_counts_hourly", "period_start"),
                ("agg_response_times_hourly", "period_start"),
            ],
            RetentionTable::Daily => &[
                ("agg_conversation_metrics_daily", "period_date"),
                ("agg_staff_performance_daily", "period_date"),
                ("agg_intent_distribution_daily", "period_date"),
            ],
            RetentionTable::Weekly => &[("agg_satisfaction_weekly", "period_start")],
            RetentionTable::Monthly => &[("agg_monthly_summary", "period_month")],
        }
    }
}

fn parse_ms(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).map_or(0, |t| t.timestamp_millis())
}

impl Storage {
    /// The events of one property in `[start, end)` of the given types.
    ///
    /// # Errors
    /// Any database error.
    pub async fn fetch_agg_events(
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
        self.row_reader
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

    /// The earliest stored `conversation.started` of each conversation, in milliseconds.
    ///
    /// # Errors
    /// Any database error.
    pub async fn earliest_conversation_starts(
        &self,
        property_id: &str,
        conversation_ids: &[&str],
    ) -> Result<HashMap<String, i64>, StorageError> {
        if conversation_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = serde_json::to_string(conversation_ids).unwrap_or_else(|_| "[]".into());
        let property_id = property_id.to_owned();
        self.row_reader
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

    /// Hours stamped dirty after change sequence `after`: `(property, hour start)`
    /// pairs and the highest sequence seen (`after` when none).
    ///
    /// # Errors
    /// Any database error.
    pub async fn dirty_hours_after(
        &self,
        after: i64,
    ) -> Result<(Vec<(String, String)>, i64), StorageError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT property_id, hour_start, change_seq FROM agg_dirty_hours WHERE change_seq > ?",
        )
        .bind(after)
        .fetch_all(&self.reader)
        .await?;
        let max = rows.iter().map(|r| r.2).max().unwrap_or(after);
        Ok((rows.into_iter().map(|(p, h, _)| (p, h)).collect(), max))
    }

    /// How far `job` has read the dirty hours.
    ///
    /// # Errors
    /// Any database error.
    pub async fn job_dirty_seq(&self, job: &str) -> Result<i64, StorageError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT dirty_seq FROM agg_job_state WHERE job = ?")
                .bind(job)
                .fetch_optional(&self.writer)
                .await?;
        Ok(seq.unwrap_or(0))
    }

    /// Queues buckets for `job` and, in the same transaction, moves its dirty-hours
    /// cursor to `dirty_seq` when given.
    ///
    /// # Errors
    /// Any database error; nothing is queued then.
    pub async fn enqueue_buckets(
        &self,
        job: &str,
        buckets: &[PendingBucket],
        dirty_seq: Option<i64>,
    ) -> Result<(), StorageError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
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
        tx.commit().await?;
        Ok(())
    }

    /// Queued buckets of `job` that have closed by `now`, oldest first.
    ///
    /// # Errors
    /// Any database error.
    pub async fn closed_pending_buckets(
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
        .fetch_all(&self.writer)
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

    /// Replaces one bucket's rows of one table with `rows`, and takes the bucket off
    /// `job`'s queue, in one transaction: readers see the old rows or the new ones,
    /// never a half-written bucket. The job's watermark moves to the bucket's end when
    /// the bucket has closed by `now`.
    ///
    /// # Errors
    /// Any database error; the old rows stay then.
    pub async fn replace_bucket(
        &self,
        job: &str,
        bucket: &PendingBucket,
        rows: &BucketRows,
        now: &str,
    ) -> Result<(), StorageError> {
        self.replace_buckets(job, &[(bucket.clone(), rows.clone())], now)
            .await
    }

    /// [`Storage::replace_bucket`] for several buckets of one job in one transaction:
    /// each is still deleted and written whole, and one commit (one `fsync`) covers
    /// them all, where an hourly run recomputes a bucket per property and a backfill
    /// thousands.
    ///
    /// # Errors
    /// Any database error; every bucket keeps its old rows and stays queued then.
    pub async fn replace_buckets(
        &self,
        job: &str,
        buckets: &[(PendingBucket, BucketRows)],
        now: &str,
    ) -> Result<(), StorageError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut watermark: Option<&str> = None;
        for (bucket, rows) in buckets {
            let (table, column) = table_of(rows);
            let delete = format!("DELETE FROM {table} WHERE {column} = ? AND property_id = ?");
            sqlx::query(sqlx::AssertSqlSafe(delete))
                .bind(&bucket.period_key)
                .bind(&bucket.property_id)
                .execute(&mut *tx)
                .await?;
            insert_rows(&mut tx, rows).await?;
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
        tx.commit().await?;
        Ok(())
    }

    /// Takes buckets off `job`'s queue without touching their rows: a bucket older
    /// than the raw-event retention is never recomputed.
    ///
    /// # Errors
    /// Any database error.
    pub async fn drop_pending_buckets(
        &self,
        job: &str,
        buckets: &[PendingBucket],
    ) -> Result<(), StorageError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        for bucket in buckets {
            dequeue(&mut tx, job, bucket).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a run and updates the job's state.
    ///
    /// # Errors
    /// Any database error.
    pub async fn record_job_run(&self, run: &JobRunRecord) -> Result<(), StorageError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
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

    /// Every job's state.
    ///
    /// # Errors
    /// Any database error.
    pub async fn job_statuses(&self) -> Result<Vec<JobStatus>, StorageError> {
        let rows = sqlx::query(
            "SELECT s.job, s.last_run_at, s.last_success_at, s.watermark, s.last_error, \
             (SELECT count(*) FROM agg_pending_buckets p WHERE p.job = s.job) AS pending \
             FROM agg_job_state s ORDER BY s.job",
        )
        .fetch_all(&self.reader)
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

    /// Takes the lease on `job` for `holder` until `expires_at`, when it is free or
    /// expired or already `holder`'s. `false` when another live holder has it.
    ///
    /// # Errors
    /// Any database error.
    pub async fn acquire_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: &str,
        expires_at: &str,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "INSERT INTO agg_job_leases (job, holder, expires_at) VALUES (?1, ?2, ?4) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE agg_job_leases.holder = ?2 OR agg_job_leases.expires_at <= ?3",
        )
        .bind(job)
        .bind(holder)
        .bind(now)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease back.
    ///
    /// # Errors
    /// Any database error.
    pub async fn release_job_lease(&self, job: &str, holder: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM agg_job_leases WHERE job = ? AND holder = ?")
            .bind(job)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Properties with at least one event in the UTC hours overlapping `[start, end)`,
    /// from the late-data bookkeeping (which every stored event updates) rather than
    /// from a scan of the raw events.
    ///
    /// # Errors
    /// Any database error.
    pub async fn properties_with_events(
        &self,
        start: &str,
        end: &str,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT property_id FROM agg_dirty_hours WHERE hour_start >= substr(?1, 1, 13) || ':00:00Z' \
             AND hour_start < ?2 ORDER BY property_id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Deletes up to `chunk` rows of each table of `class` whose period is before
    /// `cutoff` (compared in the period column's own form); returns rows deleted per
    /// table. Called repeatedly until it returns zeros, so ingest never waits long.
    ///
    /// # Errors
    /// Any database error.
    pub async fn delete_expired_chunk(
        &self,
        class: RetentionTable,
        cutoff: &str,
        chunk: u32,
    ) -> Result<Vec<(&'static str, u64)>, StorageError> {
        let mut out = Vec::new();
        for (table, column) in class.tables() {
            let sql = if *table == "agg_dirty_hours" {
                // A WITHOUT ROWID table: chunk by its primary key (the tallies are
                // rowid tables).
                format!(
                    "DELETE FROM {table} WHERE (property_id, hour_start) IN \
                     (SELECT property_id, hour_start FROM {table} WHERE {column} < ? LIMIT ?)"
                )
            } else {
                format!(
                    "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {column} < ? LIMIT ?)"
                )
            };
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(cutoff)
                .bind(i64::from(chunk))
                .execute(&self.writer)
                .await?;
            out.push((*table, done.rows_affected()));
        }
        Ok(out)
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

fn table_of(rows: &BucketRows) -> (&'static str, &'static str) {
    match rows {
        BucketRows::MessageCounts(_) => ("agg_message_counts_hourly", "period_start"),
        BucketRows::ResponseTimes(_) => ("agg_response_times_hourly", "period_start"),
        BucketRows::ConversationMetrics(_) => ("agg_conversation_metrics_daily", "period_date"),
        BucketRows::StaffPerformance(_) => ("agg_staff_performance_daily", "period_date"),
        BucketRows::IntentDistribution(_) => ("agg_intent_distribution_daily", "period_date"),
        BucketRows::Satisfaction(_) => ("agg_satisfaction_weekly", "period_start"),
        BucketRows::MonthlySummary(_) => ("agg_monthly_summary", "period_month"),
    }
}

async fn insert_rows(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &BucketRows,
) -> Result<(), StorageError> {
    match rows {
        BucketRows::MessageCounts(rows) => {
            for r in rows {
                sqlx::query(
                    "INSERT INTO agg_message_counts_hourly (period_start, property_id, channel, direction, count) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&r.period_start)
                .bind(&r.property_id)
                .bind(&r.channel)
                .bind(&r.direction)
                .bind(r.count)
                .execute(&mut **tx)
                .await?;
            }
        }
        BucketRows::ResponseTimes(rows) => {
            for r in rows {
                sqlx::query(
                    "INSERT INTO agg_response_times_hourly (period_start, property_id, channel, count, avg_ms, \
                     p50_ms, p95_ms, p99_ms, max_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&r.period_start)
                .bind(&r.property_id)
                .bind(&r.channel)
                .bind(r.count)
                .bind(r.avg_ms)
                .bind(r.p50_ms)
                .bind(r.p95_ms)
                .bind(r.p99_ms)
                .bind(r.max_ms)
                .execute(&mut **tx)
                .await?;
            }
        }
        BucketRows::ConversationMetrics(rows) => {
            for r in rows {
                sqlx::query(
                    "INSERT INTO agg_conversation_metrics_daily (period_date, property_id, channel, \
                     conversations_started, conversations_resolved, conversations_escalated, \
                     avg_first_response_ms, p50_first_response_ms, p95_first_response_ms, \
                     avg_resolution_minutes, p50_resolution_minutes, p95_resolution_minutes, \
                     ai_handled_count, ai_escalated_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&r.period_date)
                .bind(&r.property_id)
                .bind(&r.channel)
                .bind(r.conversations_started)
                .bind(r.conversations_resolved)
                .bind(r.conversations_escalated)
                .bind(r.avg_first_response_ms)
                .bind(r.p50_first_response_ms)
                .bind(r.p95_first_response_ms)
                .bind(r.avg_resolution_minutes)
                .bind(r.p50_resolution_minutes)
                .bind(r.p95_resolution_minutes)
                .bind(r.ai_handled_count)
                .bind(r.ai_escalated_count)
                .execute(&mut **tx)
                .await?;
            }
        }
        BucketRows::StaffPerformance(rows) => {
            for r in rows {
                sqlx::query(
                    "INSERT INTO agg_staff_performance_daily (period_date, property_id, staff_id, \
                     conversations_handled, tasks_completed, avg_response_time_ms, satisfaction_avg, \
                     satisfaction_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&r.period_date)
                .bind(&r.property_id)
                .bind(&r.staff_id)
                .bind(r.conversations_handled)
                .bind(r.tasks_completed)
                .bind(r.avg_response_time_ms)
                .bind(r.satisfaction_avg)
                .bind(r.satisfaction_count)
                .execute(&mut **tx)
                .await?;
            }
        }
        BucketRows::IntentDistribution(rows) => {
            for r in rows {
                sqlx::query(
                    "INSERT INTO agg_intent_distribution_daily (period_date, property_id, intent, count, \
                     avg_confidence, action_taken_count, escalated_count) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&r.period_date)
                .bind(&r.property_id)
                .bind(&r.intent)
                .bind(r.count)
                .bind(r.avg_confidence)
                .bind(r.action_taken_count)
                .bind(r.escalated_count)
                .execute(&mut **tx)
                .await?;
            }
        }
        BucketRows::Satisfaction(rows) => {
            for r in rows {
                sqlx::query(
                    "INSERT INTO agg_satisfaction_weekly (period_start, property_id, channel, surveys_sent, \
                     responses_received, rating_1, rating_2, rating_3, rating_4, rating_5, avg_rating, nps_score) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&r.period_start)
                .bind(&r.property_id)
                .bind(&r.channel)
                .bind(r.surveys_sent)
                .bind(r.responses_received)
                .bind(r.ratings[0])
                .bind(r.ratings[1])
                .bind(r.ratings[2])
                .bind(r.ratings[3])
                .bind(r.ratings[4])
                .bind(r.avg_rating)
                .bind(r.nps_score)
                .execute(&mut **tx)
                .await?;
            }
        }
        BucketRows::MonthlySummary(rows) => {
            for r in rows {
                sqlx::query(
                    "INSERT INTO agg_monthly_summary (period_month, property_id, total_conversations, \
                     total_messages, total_tasks, ai_resolution_rate, avg_satisfaction, \
                     avg_response_time_minutes, top_intents, channel_breakdown) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&r.period_month)
                .bind(&r.property_id)
                .bind(r.total_conversations)
                .bind(r.total_messages)
                .bind(r.total_tasks)
                .bind(r.ai_resolution_rate)
                .bind(r.avg_satisfaction)
                .bind(r.avg_response_time_minutes)
                .bind(&r.top_intents)
                .bind(&r.channel_breakdown)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}
