//! What the aggregator needs: a bucket's events, the late-data queue, writing a bucket's
//! rows, job runs, leases and retention.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use butler_events::{EventTime, EventType, Granularity};
use chrono::{DateTime, Utc};

use crate::sql::{Dialect, Param, Role, Row, Tx, sql};
use crate::tables::{AggTable, BucketRows, Cell};
use crate::{Storage, StorageError};

/// What a roll-up needs of a stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct AggEvent {
    /// Event id, the tie-break after the timestamp.
    pub id: String,
    /// Event type.
    pub event_type: EventType,
    /// Milliseconds since the epoch, UTC.
    pub timestamp_ms: i64,
    /// Channel, `None` grouping as `unknown`.
    pub channel: Option<String>,
    /// Staff member.
    pub staff_id: Option<String>,
    /// Conversation.
    pub conversation_id: Option<String>,
    /// Rating, confidence, …
    pub value: Option<f64>,
    /// Duration in milliseconds.
    pub duration_ms: Option<i64>,
    /// `metadata.intent` when it is a string.
    pub intent: Option<String>,
    /// Task.
    pub task_id: Option<String>,
    /// `metadata.status` when it is a string.
    pub status: Option<String>,
}

/// A bucket waiting to be recomputed by one job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PendingBucket {
    /// The property.
    pub property_id: String,
    /// The period column's value, e.g. `2026-11-24`.
    pub period_key: String,
    /// First instant inside.
    pub start: EventTime,
    /// First instant after.
    pub end: EventTime,
}

/// What a job has not materialized yet for one property.
#[derive(Debug, Clone, Default)]
pub struct WaitingForJob {
    /// Its queued buckets.
    pub queued: Vec<PendingBucket>,
    /// UTC hours (`YYYY-MM-DDTHH:00:00Z`) stamped dirty since the job last read them,
    /// with the change sequence of their latest events.
    pub dirty_hours: Vec<(String, i64)>,
    /// How far the job has read the dirty hours: with the sequences above, it tells
    /// whether a bucket computed earlier still stands.
    pub cursor: i64,
}

/// One run of a job, as recorded.
#[derive(Debug, Clone)]
pub struct JobRunRecord {
    /// Job name.
    pub job: String,
    /// `schedule`, `startup`, `cli`, `admin`.
    pub trigger: String,
    /// When it started (UTC, milliseconds).
    pub started_at: EventTime,
    /// When it finished.
    pub finished_at: EventTime,
    /// Buckets recomputed.
    pub periods_recomputed: i64,
    /// Rows written.
    pub rows_written: i64,
    /// Wall time.
    pub duration_ms: i64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Who holds a lease, since when, until when (UTC, milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease, e.g. `aggregate:daily_staff_performance`.
    pub name: String,
    /// The process holding it, `host:pid`.
    pub holder: String,
    /// When it took the lease.
    pub since: String,
    /// When the lease lapses unless renewed.
    pub expires_at: String,
}

impl Lease {
    /// A lease found free after all (given back between two statements): no holder,
    /// lapsed now.
    pub fn vacant(name: &str) -> Lease {
        let now = butler_events::EventTime::from_datetime(&chrono::Utc::now()).to_string();
        Lease {
            name: name.to_owned(),
            holder: String::new(),
            since: now.clone(),
            expires_at: now,
        }
    }
}

/// The lease a run writes under. Each of its writes renews the lease as the last
/// statement of the write's own transaction and is refused
/// ([`StorageError::LeaseLost`]) once another process holds it, so a run that lost its job never writes beside the new holder, and a run
/// busy writing never lets its lease lapse, however long another writer keeps it
/// waiting for the lock.
#[derive(Debug, Clone)]
pub struct LeaseFence {
    /// The lease, e.g. `aggregate:daily_staff_performance`.
    pub name: String,
    /// This process, `host:pid`.
    pub holder: String,
    /// How long the renewed lease lasts, from the moment the write holds the lock.
    pub ttl: std::time::Duration,
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

impl Storage {
    /// The events of one property in `[start, end)` of the given types.
    ///
    /// # Errors
    /// Any database error.
    pub async fn fetch_agg_events(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
        types: &[EventType],
    ) -> Result<Vec<AggEvent>, StorageError> {
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT id, event_type, \"timestamp\", channel, staff_id, conversation_id, value, \
             duration_ms, {intent}, task_id, {status} FROM analytics_events{index} \
             WHERE property_id = $1 AND \"timestamp\" >= $2 AND \"timestamp\" < $3 \
             AND event_type {types}",
            intent = d.metadata_text("intent"),
            status = d.metadata_text("status"),
            index = d.indexed_by("idx_events_property_time"),
            types = d.in_list(4),
        );
        let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        let params = [
            Param::Text(property_id),
            Param::Time(start),
            Param::Time(end),
            Param::Texts(&names),
        ];
        let events = self
            .backend
            .fetch(Role::Read, select, &params, agg_event)
            .await?;
        Ok(events.into_iter().flatten().collect())
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
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT conversation_id, min(\"timestamp\") FROM analytics_events \
             WHERE event_type = 'conversation.started' AND property_id = $1 \
             AND conversation_id {ids} GROUP BY conversation_id",
            ids = d.in_list(2),
        );
        self.earliest_by_id(select, property_id, conversation_ids)
            .await
    }

    /// The earliest stored `task.created` of each task, in milliseconds.
    ///
    /// # Errors
    /// Any database error.
    pub async fn earliest_task_creations(
        &self,
        property_id: &str,
        task_ids: &[&str],
    ) -> Result<HashMap<String, i64>, StorageError> {
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT task_id, min(\"timestamp\") FROM analytics_events{index} \
             WHERE event_type = 'task.created' AND property_id = $1 \
             AND task_id {ids} GROUP BY task_id",
            index = d.indexed_by("idx_events_task_created"),
            ids = d.in_list(2),
        );
        self.earliest_by_id(select, property_id, task_ids).await
    }

    /// Runs `select` (parameters: the property, then the ids; columns: an id and its
    /// earliest timestamp) and maps each id to it in milliseconds.
    async fn earliest_by_id(
        &self,
        select: &'static str,
        property_id: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, i64>, StorageError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let params = [Param::Text(property_id), Param::Texts(ids)];
        let earliest = self
            .backend
            .fetch(Role::Read, select, &params, |r| {
                Ok((r.text(0)?, r.time(1)?.millis()))
            })
            .await?;
        Ok(earliest.into_iter().collect())
    }

    /// The staff of `property_id` online at `instant`: those whose latest staff event
    /// before it (by timestamp, then id) left them online, by
    /// [`butler_events::event::staff_online_after`]. A member whose events are all gone
    /// from the raw store counts as offline.
    ///
    /// # Errors
    /// Any database error.
    pub async fn staff_online_at(
        &self,
        property_id: &str,
        instant: EventTime,
    ) -> Result<BTreeSet<String>, StorageError> {
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT staff_id, event_type, {status} FROM ( \
               SELECT staff_id, event_type, metadata, row_number() OVER \
                 (PARTITION BY staff_id ORDER BY \"timestamp\" DESC, id DESC) AS n \
               FROM analytics_events{index} \
               WHERE property_id = $1 AND \"timestamp\" < $2 AND staff_id IS NOT NULL \
               AND event_type IN ('staff.login', 'staff.logout', 'staff.status_changed') \
             ) latest WHERE n = 1",
            status = d.metadata_text("status"),
            index = d.indexed_by("idx_events_staff_presence"),
        );
        let latest = self
            .backend
            .fetch(
                Role::Read,
                select,
                &[Param::Text(property_id), Param::Time(instant)],
                |r| {
                    let status = r.opt_text(2)?;
                    let online = EventType::parse(r.str(1)?).and_then(|t| {
                        butler_events::event::staff_online_after(t, status.as_deref())
                    });
                    Ok((r.text(0)?, online == Some(true)))
                },
            )
            .await?;
        Ok(latest
            .into_iter()
            .filter_map(|(staff, online)| online.then_some(staff))
            .collect())
    }

    /// Properties with a staff member online now, as the live state says.
    ///
    /// # Errors
    /// Any database error.
    pub async fn properties_with_staff_online(&self) -> Result<Vec<String>, StorageError> {
        self.backend
            .fetch(
                Role::Read,
                "SELECT DISTINCT property_id FROM live_staff WHERE online = TRUE",
                &[],
                |r| r.text(0),
            )
            .await
    }

    /// When `job` last succeeded, if it ever did.
    ///
    /// # Errors
    /// Any database error.
    pub async fn job_last_success(&self, job: &str) -> Result<Option<EventTime>, StorageError> {
        let last = self
            .backend
            .fetch_optional(
                Role::Read,
                "SELECT last_success_at FROM agg_job_state WHERE job = $1",
                &[Param::Text(job)],
                |r| r.opt_time(0),
            )
            .await?;
        Ok(last.flatten())
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
        let rows = self
            .backend
            .fetch(
                Role::Read,
                "SELECT property_id, hour_start, change_seq FROM agg_dirty_hours WHERE change_seq > $1",
                &[Param::Int(after)],
                |r| Ok((r.text(0)?, r.time(1)?.hour_start(), r.int(2)?)),
            )
            .await?;
        let max = rows.iter().map(|r| r.2).max().unwrap_or(after);
        Ok((rows.into_iter().map(|(p, h, _)| (p, h)).collect(), max))
    }

    /// What `job` has not materialized yet for `property`. Real-time time series
    /// compute these periods from the raw events.
    ///
    /// # Errors
    /// Any database error.
    pub async fn waiting_for_job(
        &self,
        job: &str,
        property: &str,
    ) -> Result<WaitingForJob, StorageError> {
        let owner = property.to_owned();
        let queued = self
            .backend
            .fetch(
                Role::Read,
                "SELECT period_key, bucket_start, bucket_end FROM agg_pending_buckets \
                 WHERE job = $1 AND property_id = $2",
                &[Param::Text(job), Param::Text(property)],
                move |r| {
                    Ok(PendingBucket {
                        property_id: owner.clone(),
                        period_key: r.text(0)?,
                        start: r.time(1)?,
                        end: r.time(2)?,
                    })
                },
            )
            .await?;
        let cursor = self.job_dirty_seq(job).await?;
        let dirty_hours = self
            .backend
            .fetch(
                Role::Read,
                "SELECT hour_start, change_seq FROM agg_dirty_hours \
                 WHERE property_id = $1 AND change_seq > $2",
                &[Param::Text(property), Param::Int(cursor)],
                |r| Ok((r.time(0)?.hour_start(), r.int(1)?)),
            )
            .await?;
        Ok(WaitingForJob {
            queued,
            dirty_hours,
            cursor,
        })
    }

    /// How far `job` has read the dirty hours.
    ///
    /// # Errors
    /// Any database error.
    pub async fn job_dirty_seq(&self, job: &str) -> Result<i64, StorageError> {
        let seq = self
            .backend
            .fetch_optional(
                Role::Write,
                "SELECT dirty_seq FROM agg_job_state WHERE job = $1",
                &[Param::Text(job)],
                |r| r.int(0),
            )
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// Queues buckets for `job` and, in the same transaction, moves its dirty-hours
    /// cursor to `dirty_seq` when given; under `fence`, renews the run's lease as it
    /// commits.
    ///
    /// # Errors
    /// [`StorageError::LeaseLost`] when another process holds `fence`'s lease; any
    /// database error; nothing is queued then.
    pub async fn enqueue_buckets(
        &self,
        job: &str,
        buckets: &[PendingBucket],
        dirty_seq: Option<i64>,
        fence: Option<&LeaseFence>,
    ) -> Result<(), StorageError> {
        let d = self.backend.dialect();
        let mut tx = self.backend.begin(Role::Write).await?;
        if !buckets.is_empty() {
            let insert = sql!(
                d,
                "INSERT INTO agg_pending_buckets (job, property_id, period_key, bucket_start, bucket_end) \
                 SELECT $1, p, k, s, e FROM {rows} WHERE true ON CONFLICT DO NOTHING",
                rows = d.json_records(
                    2,
                    &[
                        ("p", "text"),
                        ("k", "text"),
                        ("s", "timestamptz"),
                        ("e", "timestamptz")
                    ]
                ),
            );
            let mut rows = Vec::with_capacity(buckets.len());
            for b in buckets {
                rows.push(serde_json::json!({
                    "p": b.property_id,
                    "k": b.period_key,
                    "s": b.start.to_string(),
                    "e": b.end.to_string(),
                }));
            }
            let rows = serde_json::Value::Array(rows).to_string();
            tx.execute(insert, &[Param::Text(job), Param::Text(&rows)])
                .await?;
        }
        if let Some(seq) = dirty_seq {
            tx.execute(
                "INSERT INTO agg_job_state (job, dirty_seq) VALUES ($1, $2) \
                 ON CONFLICT (job) DO UPDATE SET dirty_seq = CASE \
                 WHEN excluded.dirty_seq > agg_job_state.dirty_seq THEN excluded.dirty_seq \
                 ELSE agg_job_state.dirty_seq END",
                &[Param::Text(job), Param::Int(seq)],
            )
            .await?;
        }
        renew_fence(&mut tx, fence).await?;
        tx.commit().await
    }

    /// Queued buckets of `job` that have closed by `now`, oldest first.
    ///
    /// # Errors
    /// Any database error.
    pub async fn closed_pending_buckets(
        &self,
        job: &str,
        now: EventTime,
    ) -> Result<Vec<PendingBucket>, StorageError> {
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT property_id, period_key, bucket_start, bucket_end FROM agg_pending_buckets \
             WHERE job = $1 AND bucket_end <= $2 ORDER BY bucket_start, property_id{}",
            d.bytewise()
        );
        self.backend
            .fetch(
                Role::Write,
                select,
                &[Param::Text(job), Param::Time(now)],
                |r| {
                    Ok(PendingBucket {
                        property_id: r.text(0)?,
                        period_key: r.text(1)?,
                        start: r.time(2)?,
                        end: r.time(3)?,
                    })
                },
            )
            .await
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
        now: EventTime,
    ) -> Result<(), StorageError> {
        self.replace_buckets(job, &[(bucket.clone(), rows.clone())], now, None)
            .await
    }

    /// [`Storage::replace_bucket`] for several buckets of one job in one transaction:
    /// each is still deleted and written whole, and one commit (one `fsync`) covers
    /// them all, where an hourly run recomputes a bucket per property and a backfill
    /// thousands.
    ///
    /// Under `fence`, the write renews the run's lease as the last statement of its
    /// transaction.
    ///
    /// # Errors
    /// [`StorageError::LeaseLost`] when another process holds `fence`'s lease; any
    /// database error; every bucket keeps its old rows and stays queued then.
    pub async fn replace_buckets(
        &self,
        job: &str,
        buckets: &[(PendingBucket, BucketRows)],
        now: EventTime,
        fence: Option<&LeaseFence>,
    ) -> Result<(), StorageError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let d = self.backend.dialect();
        let mut tx = self.backend.begin(Role::Write).await?;
        let mut watermark: Option<EventTime> = None;
        let mut statements: Option<(&str, String, String)> = None;
        for (bucket, rows) in buckets {
            let table = rows.table;
            let (delete, insert) = match &statements {
                Some((name, delete, insert)) if *name == table.name => (delete, insert),
                _ => {
                    let built = statements.insert((
                        table.name,
                        format!(
                            "DELETE FROM {} WHERE {} = {} AND property_id = $2",
                            table.name,
                            table.period_column,
                            d.period_param(1, table.granularity)
                        ),
                        insert_statement(table, d),
                    ));
                    (&built.1, &built.2)
                }
            };
            let key = [
                Param::Text(&bucket.period_key),
                Param::Text(&bucket.property_id),
            ];
            tx.execute(delete.clone(), &key).await?;
            for row in &rows.rows {
                let values: Vec<Param<'_>> = row
                    .iter()
                    .map(|cell| match cell {
                        Cell::Text(v) => Param::Text(v),
                        Cell::Integer(v) => Param::OptInt(*v),
                        Cell::Real(v) => Param::OptReal(*v),
                    })
                    .collect();
                tx.execute(insert.clone(), &values).await?;
            }
            dequeue(&mut tx, job, bucket).await?;
            let end = bucket.end;
            if end <= now && watermark.is_none_or(|w| end > w) {
                watermark = Some(end);
            }
        }
        if let Some(end) = watermark {
            tx.execute(
                "INSERT INTO agg_job_state (job, watermark) VALUES ($1, $2) ON CONFLICT (job) DO UPDATE SET \
                 watermark = CASE WHEN agg_job_state.watermark IS NULL \
                 OR excluded.watermark > agg_job_state.watermark \
                 THEN excluded.watermark ELSE agg_job_state.watermark END",
                &[Param::Text(job), Param::Time(end)],
            )
            .await?;
        }
        renew_fence(&mut tx, fence).await?;
        tx.commit().await
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
        let mut tx = self.backend.begin(Role::Write).await?;
        for bucket in buckets {
            dequeue(&mut tx, job, bucket).await?;
        }
        tx.commit().await
    }

    /// Records a run and updates the job's state.
    ///
    /// # Errors
    /// Any database error.
    pub async fn record_job_run(&self, run: &JobRunRecord) -> Result<(), StorageError> {
        let finished = Param::Time(run.finished_at);
        let mut tx = self.backend.begin(Role::Write).await?;
        tx.execute(
            "INSERT INTO agg_job_runs (job, trigger, started_at, finished_at, periods_recomputed, \
             rows_written, duration_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                Param::Text(&run.job),
                Param::Text(&run.trigger),
                Param::Time(run.started_at),
                finished,
                Param::Int(run.periods_recomputed),
                Param::Int(run.rows_written),
                Param::Int(run.duration_ms),
                Param::OptText(run.error.as_deref()),
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO agg_job_state (job, last_run_at, last_success_at, last_error) \
             VALUES ($1, $2, CASE WHEN $3 IS NULL THEN $2 END, $3) \
             ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at, \
             last_success_at = coalesce(excluded.last_success_at, agg_job_state.last_success_at), \
             last_error = excluded.last_error",
            &[
                Param::Text(&run.job),
                finished,
                Param::OptText(run.error.as_deref()),
            ],
        )
        .await?;
        tx.commit().await
    }

    /// Every job's state.
    ///
    /// # Errors
    /// Any database error.
    pub async fn job_statuses(&self) -> Result<Vec<JobStatus>, StorageError> {
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT s.job, s.last_run_at, s.last_success_at, s.watermark, s.last_error, \
             (SELECT count(*) FROM agg_pending_buckets p WHERE p.job = s.job) AS pending \
             FROM agg_job_state s ORDER BY s.job{}",
            d.bytewise()
        );
        self.backend
            .fetch(Role::Read, select, &[], |r| {
                let time = |i| Ok::<_, StorageError>(r.opt_time(i)?.map(|t| t.to_string()));
                Ok(JobStatus {
                    job: r.text(0)?,
                    last_run_at: time(1)?,
                    last_success_at: time(2)?,
                    watermark: time(3)?,
                    last_error: r.opt_text(4)?,
                    pending_buckets: r.int(5)?,
                })
            })
            .await
    }

    /// Takes the lease `name` for `holder` for `ttl`, when it is free, expired, or
    /// already `holder`'s (whose `since` then stays). When another holder has it, that
    /// holder.
    ///
    /// Every lease time is read from the database's clock when the statement holds its
    /// lock: one clock for all instances, and a statement kept waiting for the lock
    /// never writes an expiry that is already past.
    ///
    /// # Errors
    /// Any database error.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Result<(), Lease>, StorageError> {
        let d = self.backend.dialect();
        let acquire = sql!(
            d,
            "INSERT INTO agg_job_leases (job, holder, expires_at, since) \
             VALUES ($1, $2, {later}, {now}) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, \
             since = CASE WHEN agg_job_leases.holder = excluded.holder THEN agg_job_leases.since \
                          ELSE excluded.since END \
             WHERE agg_job_leases.holder = $2 OR agg_job_leases.expires_at <= {now}",
            later = d.millis_from_now(3),
            now = d.now(),
        );
        let params = [
            Param::Text(name),
            Param::Text(holder),
            Param::Int(millis(ttl)),
        ];
        if self.backend.execute(Role::Lease, acquire, &params).await? == 1 {
            return Ok(Ok(()));
        }
        let held = self.leases().await?.into_iter().find(|l| l.name == name);
        // Gone between the two statements: it is free now; the caller tries again.
        Ok(Err(held.unwrap_or_else(|| Lease::vacant(name))))
    }

    /// Takes the lease `name` from `from` (a holder found gone) for `holder`, only if
    /// `from` still holds it; whether it did.
    ///
    /// # Errors
    /// Any database error.
    pub async fn take_over_lease(
        &self,
        name: &str,
        from: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StorageError> {
        let d = self.backend.dialect();
        let take = sql!(
            d,
            "UPDATE agg_job_leases SET holder = $4, since = {now}, expires_at = {later} \
             WHERE job = $1 AND holder = $2",
            now = d.now(),
            later = d.millis_from_now(3),
        );
        let params = [
            Param::Text(name),
            Param::Text(from),
            Param::Int(millis(ttl)),
            Param::Text(holder),
        ];
        Ok(self.backend.execute(Role::Lease, take, &params).await? == 1)
    }

    /// Moves the expiry of `holder`'s lease `name` to `ttl` from now; `false` when
    /// `holder` no longer holds it (another process took it over).
    ///
    /// # Errors
    /// Any database error.
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StorageError> {
        let params = [
            Param::Text(name),
            Param::Text(holder),
            Param::Int(millis(ttl)),
        ];
        let renewed = self
            .backend
            .execute(Role::Lease, renew_sql(self.backend.dialect()), &params)
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease back.
    ///
    /// # Errors
    /// Any database error.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        self.backend
            .execute(
                Role::Lease,
                "DELETE FROM agg_job_leases WHERE job = $1 AND holder = $2",
                &[Param::Text(name), Param::Text(holder)],
            )
            .await?;
        Ok(())
    }

    /// Every lease held now (or expired but not yet taken), by name.
    ///
    /// # Errors
    /// Any database error.
    pub async fn leases(&self) -> Result<Vec<Lease>, StorageError> {
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT job, holder, since, expires_at FROM agg_job_leases ORDER BY job{}",
            d.bytewise()
        );
        self.backend
            .fetch(Role::Read, select, &[], |r| {
                Ok(Lease {
                    name: r.text(0)?,
                    holder: r.text(1)?,
                    since: r.opt_time(2)?.map(|t| t.to_string()).unwrap_or_default(),
                    expires_at: r.time(3)?.to_string(),
                })
            })
            .await
    }

    /// Properties with at least one event in the UTC hours overlapping `[start, end)`,
    /// from the late-data bookkeeping (which every stored event updates) rather than
    /// from a scan of the raw events.
    ///
    /// # Errors
    /// Any database error.
    pub async fn properties_with_events(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<String>, StorageError> {
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT property_id FROM agg_dirty_hours WHERE hour_start >= {first} \
             AND hour_start < {last} GROUP BY property_id ORDER BY property_id{bytewise}",
            first = d.period_param(1, Granularity::Hour),
            last = d.period_param(2, Granularity::Hour),
            bytewise = d.bytewise(),
        );
        let (first, last) = Granularity::Hour.key_range(chrono_tz::UTC, start, end);
        self.backend
            .fetch(
                Role::Read,
                select,
                &[Param::Text(&first), Param::Text(&last)],
                |r| r.text(0),
            )
            .await
    }
}

/// A row of [`Storage::fetch_agg_events`]' SELECT; `None` for a type this version
/// does not know.
fn agg_event(r: &dyn Row) -> Result<Option<AggEvent>, StorageError> {
    let Some(event_type) = EventType::parse(r.str(1)?) else {
        return Ok(None);
    };
    Ok(Some(AggEvent {
        id: r.text(0)?,
        event_type,
        timestamp_ms: r.time(2)?.millis(),
        channel: r.opt_text(3)?,
        staff_id: r.opt_text(4)?,
        conversation_id: r.opt_text(5)?,
        value: r.opt_real(6)?,
        duration_ms: r.opt_int(7)?,
        intent: r.opt_text(8)?,
        task_id: r.opt_text(9)?,
        status: r.opt_text(10)?,
    }))
}

/// The INSERT of one row of `table`, its columns in definition order, each value of
/// its column's type.
fn insert_statement(table: &AggTable, d: Dialect) -> String {
    let columns: Vec<&str> = table.columns().collect();
    let values: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            if *column == table.period_column {
                d.period_param(i + 1, table.granularity)
            } else {
                d.typed_param(i + 1, table.find_measure(column).map(|m| m.kind))
            }
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        columns.join(", "),
        values.join(", ")
    )
}

async fn dequeue(tx: &mut Tx, job: &str, bucket: &PendingBucket) -> Result<(), StorageError> {
    tx.execute(
        "DELETE FROM agg_pending_buckets WHERE job = $1 AND property_id = $2 AND period_key = $3",
        &[
            Param::Text(job),
            Param::Text(&bucket.property_id),
            Param::Text(&bucket.period_key),
        ],
    )
    .await?;
    Ok(())
}

/// Moves lease `$1`'s expiry to `$3` milliseconds from now if `$2` still holds it.
fn renew_sql(d: Dialect) -> &'static str {
    sql!(
        d,
        "UPDATE agg_job_leases SET expires_at = {} WHERE job = $1 AND holder = $2",
        d.millis_from_now(3)
    )
}

/// `ttl` in whole milliseconds.
fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// As its transaction's last statement, so that the lease runs `ttl` from the commit
/// however long the transaction took: renews the lease `fence` names, or fails with
/// [`StorageError::LeaseLost`] (the transaction then rolls back) when another process
/// holds it.
async fn renew_fence(tx: &mut Tx, fence: Option<&LeaseFence>) -> Result<(), StorageError> {
    let Some(fence) = fence else {
        return Ok(());
    };
    let params = [
        Param::Text(&fence.name),
        Param::Text(&fence.holder),
        Param::Int(millis(fence.ttl)),
    ];
    if tx.execute(renew_sql(tx.dialect()), &params).await? == 1 {
        Ok(())
    } else {
        Err(StorageError::LeaseLost(fence.name.clone()))
    }
}
