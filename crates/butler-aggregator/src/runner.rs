//! Running a job: fold newly dirty hours into the job's queue, then recompute every
//! queued bucket that has closed, writing each whole, many to a transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use butler_events::calendar::Bucket;
use butler_events::{EventTime, EventType, Granularity, Zones};
use butler_storage::aggregation::{AggEvent, JobRunRecord, Lease, PendingBucket};
use butler_storage::tables::BucketRows;
use butler_storage::{Storage, StorageError};
use chrono::{DateTime, Duration, Utc};

use crate::jobs::{BucketInput, Job, Later, Starts};
use crate::lease::JobLease;
use crate::metrics::AggregatorMetrics;
use crate::rules::SharedRules;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another process holds the job's lease.
    #[error(
        "job {job} is running in another process: {} holds it since {}, until {} unless it renews",
        lease.holder, lease.since, lease.expires_at
    )]
    Busy {
        /// The job.
        job: &'static str,
        /// Its lease as it stands.
        lease: Lease,
    },
    /// Another process took the job's lease over during the run (this one was
    /// presumed dead): the run stopped before writing more.
    #[error("job {0} was taken over by another process during the run")]
    LeaseLost(&'static str),
}

/// What the aggregator takes from the configuration.
#[derive(Debug, Clone)]
pub struct AggregatorSettings {
    /// The zone of each property's local buckets.
    pub zones: Zones,
    /// `retention.raw_events`: buckets starting before now minus this are never
    /// recomputed.
    pub raw_retention: Duration,
    /// This process's name in job leases (`lease::this_holder()`).
    pub holder: String,
    /// How long a job lease lasts unless renewed (`aggregation.lease_ms`).
    pub lease_ttl: std::time::Duration,
    /// `business_hours` and `sla`, replaced on a reload.
    pub rules: SharedRules,
}

/// The outcome of one run, as `analytics.admin.aggregate` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The job.
    pub job: Job,
    /// Buckets recomputed.
    pub periods_recomputed: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Wall time in milliseconds.
    pub ms: u64,
}

/// What started a run. Recorded with every run in `agg_job_runs.trigger` and shown by
/// `status`, so each is named once here and its stored spelling never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The start-up catch-up, which runs every job once.
    Startup,
    /// The job's cron schedule.
    Schedule,
    /// The `aggregate` command.
    Cli,
    /// An `analytics.admin.aggregate` request.
    Admin,
}

impl Trigger {
    /// The name stored in `agg_job_runs.trigger` and written in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Schedule => "schedule",
            Trigger::Cli => "cli",
            Trigger::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Told how far a run has got: (job, buckets done, buckets to do), after each write
/// and once at the end. For a person watching a long command.
pub type ProgressHook = std::sync::Arc<dyn Fn(Job, u64, u64) + Send + Sync>;

/// Runs jobs against one database.
#[derive(Clone)]
pub struct Aggregator {
    storage: Storage,
    settings: AggregatorSettings,
    metrics: Option<AggregatorMetrics>,
    progress: Option<ProgressHook>,
    unmaterialized: UnmaterializedCache,
}

/// Buckets computed for real-time series, by (job, property, period key, the job's
/// dirty-hours cursor, the latest change sequence among the bucket's dirty hours, the
/// business rules' generation): a bucket's rows change only when new events stamp its
/// hours with a new sequence, when the job reads them (the cursor moves), or when a
/// reload replaces the rules, so an entry stands until then and repeated requests do
/// not recompute a day of events each time.
type UnmaterializedCache = moka::future::Cache<(Job, String, String, i64, i64, u64), BucketRows>;

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("storage", &self.storage)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn pending(property: &str, b: &Bucket) -> PendingBucket {
    PendingBucket {
        property_id: property.to_owned(),
        period_key: b.key.clone(),
        start: EventTime::from_datetime(&b.start),
        end: EventTime::from_datetime(&b.end),
    }
}

/// Recomputed buckets are written this many at a time, or once they hold this many
/// rows, in one transaction: one commit for an hourly run's bucket of every property,
/// while the write lock ingest waits for is held only for milliseconds.
const WRITE_BUCKETS: usize = 500;
const WRITE_ROWS: usize = 5_000;

/// Buckets are queued this many per transaction, so that queueing a long backlog
/// (months of dirty hours after a restore) never holds the write lock for longer
/// than a lease renewal or an ingest commit can wait.
const QUEUE_BUCKETS: usize = 2_000;

/// How far before a range a bucket overlapping it can start (local zones differ from
/// UTC by at most 14 hours).
fn margin(granularity: Granularity) -> Duration {
    match granularity {
        Granularity::Hour | Granularity::Day => Duration::days(1),
        Granularity::Week => Duration::days(8),
        Granularity::Month => Duration::days(32),
    }
}

impl Aggregator {
    /// An aggregator over `storage`.
    pub fn new(storage: Storage, settings: AggregatorSettings) -> Aggregator {
        Aggregator {
            storage,
            settings,
            metrics: None,
            progress: None,
            unmaterialized: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(std::time::Duration::from_secs(3600))
                .build(),
        }
    }

    /// The same, telling `progress` how far each run has got.
    pub fn with_progress(mut self, progress: ProgressHook) -> Aggregator {
        self.progress = Some(progress);
        self
    }

    fn tell_progress(&self, job: Job, done: usize, total: usize) {
        if let Some(progress) = &self.progress {
            progress(job, done as u64, total as u64);
        }
    }

    /// The same, counting lease waits and leases held in `metrics`.
    pub fn with_metrics(mut self, metrics: AggregatorMetrics) -> Aggregator {
        self.metrics = Some(metrics);
        self
    }

    /// The database it works on.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The settings in force.
    pub fn settings(&self) -> &AggregatorSettings {
        &self.settings
    }

    /// A scheduled (or start-up) run: queues the buckets of hours that received events
    /// since the last run, then recomputes every queued bucket that has closed by `now`.
    ///
    /// # Errors
    /// [`AggregateError::Busy`] when another process runs the job; a database error.
    pub async fn run_due(
        &self,
        job: Job,
        trigger: Trigger,
        now: DateTime<Utc>,
    ) -> Result<RunReport, AggregateError> {
        let lease = self.lease(job).await?;
        let started = Utc::now();
        let result = async {
            self.queue_dirty(job, &lease, now).await?;
            let closed = self
                .storage
                .closed_pending_buckets(job.name(), EventTime::from_datetime(&now))
                .await?;
            self.recompute(job, &closed, now, &lease).await
        }
        .await;
        self.finish(job, trigger, started, result, lease).await
    }

    /// Recomputes now every bucket of `job` overlapping `[from, to)`, for every
    /// property with events there, whether or not it has closed.
    ///
    /// # Errors
    /// As [`Aggregator::run_due`].
    pub async fn backfill(
        &self,
        job: Job,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        trigger: Trigger,
        now: DateTime<Utc>,
    ) -> Result<RunReport, AggregateError> {
        let lease = self.lease(job).await?;
        let started = Utc::now();
        let result = async {
            let granularity = job.granularity();
            let wide = margin(granularity);
            let properties = self
                .storage
                .properties_with_events(from - wide, to + wide)
                .await?;
            let mut buckets = BTreeSet::new();
            for property in &properties {
                let tz = self.settings.zones.of(property);
                for b in granularity.buckets_overlapping(tz, from, to) {
                    buckets.insert(pending(property, &b));
                }
            }
            let buckets: Vec<_> = buckets.into_iter().collect();
            self.recompute(job, &buckets, now, &lease).await
        }
        .await;
        self.finish(job, trigger, started, result, lease).await
    }

    async fn lease(&self, job: Job) -> Result<JobLease, AggregateError> {
        JobLease::acquire(
            &self.storage,
            job.name(),
            &self.settings.holder,
            self.settings.lease_ttl,
            self.metrics.as_ref(),
        )
        .await
    }

    /// Records the run and gives the lease back.
    async fn finish(
        &self,
        job: Job,
        trigger: Trigger,
        started: DateTime<Utc>,
        result: Result<RunReport, AggregateError>,
        lease: JobLease,
    ) -> Result<RunReport, AggregateError> {
        let finished = Utc::now();
        let (periods, rows, error) = match &result {
            Ok(r) => (r.periods_recomputed, r.rows_written, None),
            Err(e) => (0, 0, Some(e.to_string())),
        };
        let record = JobRunRecord {
            job: job.name().to_owned(),
            trigger: trigger.as_str().to_owned(),
            started_at: EventTime::from_datetime(&started),
            finished_at: EventTime::from_datetime(&finished),
            periods_recomputed: periods as i64,
            rows_written: rows as i64,
            duration_ms: (finished - started).num_milliseconds(),
            error,
        };
        let recorded = self.storage.record_job_run(&record).await;
        let released = lease.release().await;
        let report = result?;
        recorded?;
        released?;
        Ok(report)
    }

    /// Moves hours stamped dirty since the job's cursor into its queue, as the buckets
    /// that hold them.
    async fn queue_dirty(
        &self,
        job: Job,
        lease: &JobLease,
        now: DateTime<Utc>,
    ) -> Result<(), AggregateError> {
        let after = self.storage.job_dirty_seq(job.name()).await?;
        let (hours, max_seq) = self.storage.dirty_hours_after(after).await?;
        let carried = match job.later() {
            Later::Unaffected => BTreeSet::new(),
            Later::ReadEarlier | Later::CarryState => {
                self.carried_buckets(job, &hours, now).await?
            }
        };
        if hours.is_empty() && carried.is_empty() {
            return Ok(());
        }
        let granularity = job.granularity();
        let mut buckets = carried;
        for (property, hour) in &hours {
            let Ok(start) = DateTime::parse_from_rfc3339(hour) else {
                continue;
            };
            let start = start.with_timezone(&Utc);
            let tz = self.settings.zones.of(property);
            for b in granularity.buckets_overlapping(tz, start, start + Duration::hours(1)) {
                buckets.insert(pending(property, &b));
            }
        }
        let buckets: Vec<_> = buckets.into_iter().collect();
        // Queueing is idempotent: a run stopped between two chunks has not moved the
        // cursor, and the next run queues the same buckets again.
        let chunks: Vec<_> = buckets.chunks(QUEUE_BUCKETS).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            lease.check(job.name())?;
            match self
                .storage
                .enqueue_buckets(
                    job.name(),
                    chunk,
                    last.then_some(max_seq),
                    Some(&lease.fence()),
                )
                .await
            {
                Err(StorageError::LeaseLost(_)) => {
                    return Err(AggregateError::LeaseLost(job.name()));
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// For a job whose later buckets a change reaches ([`Later`]): the closed buckets
    /// after each changed one (a late creation re-times later completions, a late
    /// login changes every day the session covers); for one that carries state, also
    /// those closed since the job last succeeded for every property with a state in
    /// force now (a day with no events of its own still has its rows), from the
    /// bucket before that success on. None starts before the raw-event cutoff.
    async fn carried_buckets(
        &self,
        job: Job,
        hours: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<BTreeSet<PendingBucket>, AggregateError> {
        let granularity = job.granularity();
        let cutoff = now - self.settings.raw_retention;
        let last_success = match job.later() {
            Later::CarryState => self
                .storage
                .job_last_success(job.name())
                .await?
                .and_then(|t| DateTime::from_timestamp_millis(t.millis())),
            Later::Unaffected | Later::ReadEarlier => None,
        };
        let mut from: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for (property, hour) in hours {
            if let Ok(start) = DateTime::parse_from_rfc3339(hour) {
                let start = start.with_timezone(&Utc);
                let earliest = from.entry(property.clone()).or_insert(start);
                *earliest = (*earliest).min(start);
            }
        }
        if let Some(last) = last_success {
            let since = last - margin(granularity);
            for property in self.storage.properties_with_staff_online().await? {
                let earliest = from.entry(property).or_insert(since);
                *earliest = (*earliest).min(since);
            }
        }
        let mut buckets = BTreeSet::new();
        for (property, start) in from {
            let tz = self.settings.zones.of(&property);
            for b in granularity.buckets_overlapping(tz, start.max(cutoff), now) {
                if b.end <= now && b.start >= cutoff {
                    buckets.insert(pending(&property, &b));
                }
            }
        }
        Ok(buckets)
    }

    /// Writes computed buckets under the run's lease.
    async fn write(
        &self,
        job: Job,
        computed: &[(PendingBucket, BucketRows)],
        now: EventTime,
        lease: &JobLease,
    ) -> Result<(), AggregateError> {
        match self
            .storage
            .replace_buckets(job.name(), computed, now, Some(&lease.fence()))
            .await
        {
            Err(StorageError::LeaseLost(_)) => Err(AggregateError::LeaseLost(job.name())),
            other => Ok(other?),
        }
    }

    /// The rows of one bucket, from its raw events, by the job's definitions.
    async fn compute(
        &self,
        job: Job,
        bucket: &PendingBucket,
        now: DateTime<Utc>,
    ) -> Result<BucketRows, AggregateError> {
        let events = self
            .storage
            .fetch_agg_events(
                &bucket.property_id,
                bucket.start,
                bucket.end,
                job.event_types(),
            )
            .await?;
        let ids = |wanted: fn(&AggEvent) -> Option<&str>| -> Vec<&str> {
            let ids: BTreeSet<&str> = events.iter().filter_map(wanted).collect();
            ids.into_iter().collect()
        };
        let mut online_at_start = BTreeSet::new();
        let earliest = match job.starts() {
            Starts::Unread => HashMap::new(),
            Starts::OnlineStaff => {
                online_at_start = self
                    .storage
                    .staff_online_at(&bucket.property_id, bucket.start)
                    .await?;
                HashMap::new()
            }
            Starts::OfConversations => {
                let ids = ids(|e| {
                    let unresolved =
                        e.event_type == EventType::ConversationResolved && e.duration_ms.is_none();
                    e.conversation_id.as_deref().filter(|_| unresolved)
                });
                self.storage
                    .earliest_conversation_starts(&bucket.property_id, &ids)
                    .await?
            }
            Starts::OfTasks => {
                let ids = ids(|e| {
                    e.task_id
                        .as_deref()
                        .filter(|_| e.event_type == EventType::TaskCompleted)
                });
                self.storage
                    .earliest_task_creations(&bucket.property_id, &ids)
                    .await?
            }
        };
        let (_, rules) = self.settings.rules.get();
        Ok(job.compute(&BucketInput {
            property: &bucket.property_id,
            key: &bucket.period_key,
            events: &events,
            earliest: &earliest,
            online_at_start: &online_at_start,
            start_ms: bucket.start.millis(),
            end_ms: bucket.end.millis(),
            now_ms: now.timestamp_millis(),
            zone: self.settings.zones.of(&bucket.property_id),
            rules: &rules,
        }))
    }

    /// The buckets of `job` for `property` overlapping `[from, to)` that its table
    /// does not hold yet, or not as they stand — the open bucket at `now`, buckets
    /// queued for the job, buckets of hours stamped dirty since it last read them —
    /// each computed now from the raw events (its rows, possibly none), oldest first.
    /// Nothing is written. Buckets older than the raw-event retention are left out:
    /// their stored rows stand.
    ///
    /// # Errors
    /// A database error.
    pub async fn unmaterialized(
        &self,
        job: Job,
        property: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, BucketRows)>, AggregateError> {
        let granularity = job.granularity();
        let tz = self.settings.zones.of(property);
        let overlaps = |b: &Bucket| b.start < to && b.end > from;
        let waiting = self.storage.waiting_for_job(job.name(), property).await?;
        // Each bucket with the latest change sequence among its dirty hours.
        let mut buckets: BTreeMap<PendingBucket, i64> = BTreeMap::new();
        let open = granularity.bucket_of(tz, now);
        if overlaps(&open) {
            buckets.insert(pending(property, &open), 0);
        }
        for bucket in &waiting.queued {
            if let Some(b) = granularity.bucket_for_key(tz, &bucket.period_key)
                && overlaps(&b)
            {
                buckets.entry(pending(property, &b)).or_insert(0);
            }
        }
        for (hour, seq) in &waiting.dirty_hours {
            let Ok(start) = DateTime::parse_from_rfc3339(hour) else {
                continue;
            };
            let start = start.with_timezone(&Utc);
            for b in granularity.buckets_overlapping(tz, start, start + Duration::hours(1)) {
                if overlaps(&b) {
                    let latest = buckets.entry(pending(property, &b)).or_insert(0);
                    *latest = (*latest).max(*seq);
                }
            }
        }
        let cutoff = EventTime::from_datetime(&(now - self.settings.raw_retention));
        let mut out = Vec::with_capacity(buckets.len());
        for (bucket, seq) in buckets.into_iter().filter(|(b, _)| b.start >= cutoff) {
            let key = (
                job,
                bucket.property_id.clone(),
                bucket.period_key.clone(),
                waiting.cursor,
                seq,
                self.settings.rules.get().0,
            );
            // A bucket that carries state in depends on the clock too (a stretch
            // still online counts up to now): computed each time.
            let carries_state = job.later() == Later::CarryState;
            let cached = if carries_state {
                None
            } else {
                self.unmaterialized.get(&key).await
            };
            let rows = match cached {
                Some(rows) => rows,
                None => {
                    let rows = self.compute(job, &bucket, now).await?;
                    if !carries_state {
                        self.unmaterialized.insert(key, rows.clone()).await;
                    }
                    rows
                }
            };
            out.push((bucket.period_key, rows));
        }
        Ok(out)
    }

    async fn recompute(
        &self,
        job: Job,
        buckets: &[PendingBucket],
        now: DateTime<Utc>,
        lease: &JobLease,
    ) -> Result<RunReport, AggregateError> {
        let started = Instant::now();
        let cutoff = EventTime::from_datetime(&(now - self.settings.raw_retention));
        let now_ts = EventTime::from_datetime(&now);
        let mut report = RunReport {
            job,
            periods_recomputed: 0,
            rows_written: 0,
            ms: 0,
        };
        let mut expired = Vec::new();
        let mut computed = Vec::new();
        let mut computed_rows = 0;
        for (i, bucket) in buckets.iter().enumerate() {
            let done = i + 1;
            if bucket.start < cutoff {
                // Its raw events are partly gone: the stored rollup stays as it is.
                expired.push(bucket.clone());
                continue;
            }
            let rows = self.compute(job, bucket, now).await?;
            report.rows_written += rows.len() as u64;
            report.periods_recomputed += 1;
            computed_rows += rows.len();
            computed.push((bucket.clone(), rows));
            if computed.len() >= WRITE_BUCKETS || computed_rows >= WRITE_ROWS {
                lease.check(job.name())?;
                self.write(job, &computed, now_ts, lease).await?;
                computed.clear();
                computed_rows = 0;
                self.tell_progress(job, done, buckets.len());
            }
        }
        lease.check(job.name())?;
        self.write(job, &computed, now_ts, lease).await?;
        self.tell_progress(job, buckets.len(), buckets.len());
        self.storage
            .drop_pending_buckets(job.name(), &expired)
            .await?;
        report.ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
