//! What the aggregator needs: a bucket's events, the late-data queue, writing a bucket's
//! rows, job runs, leases and retention.

use std::collections::HashMap;

use butler_events::EventType;
use chrono::{DateTime, Utc};

use crate::tables::BucketRows;
use crate::{Storage, StorageError, dispatch};

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
}

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
        start: &str,
        end: &str,
        types: &[EventType],
    ) -> Result<Vec<AggEvent>, StorageError> {
        dispatch!(self.fetch_agg_events(property_id, start, end, types))
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
        dispatch!(self.earliest_conversation_starts(property_id, conversation_ids))
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
        dispatch!(self.dirty_hours_after(after))
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
        dispatch!(self.waiting_for_job(job, property))
    }

    /// How far `job` has read the dirty hours.
    ///
    /// # Errors
    /// Any database error.
    pub async fn job_dirty_seq(&self, job: &str) -> Result<i64, StorageError> {
        dispatch!(self.job_dirty_seq(job))
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
        dispatch!(self.enqueue_buckets(job, buckets, dirty_seq, fence))
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
        dispatch!(self.closed_pending_buckets(job, now))
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
        now: &str,
        fence: Option<&LeaseFence>,
    ) -> Result<(), StorageError> {
        dispatch!(self.replace_buckets(job, buckets, now, fence))
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
        dispatch!(self.drop_pending_buckets(job, buckets))
    }

    /// Records a run and updates the job's state.
    ///
    /// # Errors
    /// Any database error.
    pub async fn record_job_run(&self, run: &JobRunRecord) -> Result<(), StorageError> {
        dispatch!(self.record_job_run(run))
    }

    /// Every job's state.
    ///
    /// # Errors
    /// Any database error.
    pub async fn job_statuses(&self) -> Result<Vec<JobStatus>, StorageError> {
        dispatch!(self.job_statuses())
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
        dispatch!(self.acquire_lease(name, holder, ttl))
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
        dispatch!(self.take_over_lease(name, from, holder, ttl))
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
        dispatch!(self.renew_lease(name, holder, ttl))
    }

    /// Gives the lease back.
    ///
    /// # Errors
    /// Any database error.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        dispatch!(self.release_lease(name, holder))
    }

    /// Every lease held now (or expired but not yet taken), by name.
    ///
    /// # Errors
    /// Any database error.
    pub async fn leases(&self) -> Result<Vec<Lease>, StorageError> {
        dispatch!(self.leases())
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
        dispatch!(self.properties_with_events(start, end))
    }
}
