//! `analytics.admin.aggregate` (recompute a range now) and `analytics.admin.status`
//! (how every job is doing). The aggregation itself is behind [`AggregationControl`],
//! which the binary implements over the aggregator it runs, so this crate knows the
//! requests and replies and nothing of how jobs run.

use butler_events::Zones;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::{QueryError, request_range};

/// What the admin requests need of the aggregator.
pub trait AggregationControl: Send + Sync {
    /// Every job's name, in schedule order.
    fn job_names(&self) -> Vec<&'static str>;

    /// Recomputes now every bucket of `job` that overlaps `[from, to)`.
    fn backfill(
        &self,
        job: &'static str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<RunSummary, ControlError>>;

    /// Every job's state, in schedule order.
    fn status(&self) -> BoxFuture<'_, Result<Vec<JobState>, ControlError>>;

    /// The periods of `job` for `property` overlapping `[from, to)` that its table
    /// does not hold as they stand yet (the open one, those waiting for the job), each
    /// with the rows the job would write for it now; nothing is written. Real-time
    /// time series answer these periods from them.
    fn unmaterialized<'a>(
        &'a self,
        job: &'static str,
        property: &'a str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<(String, butler_storage::tables::BucketRows)>, ControlError>>;
}

/// Why a job could not be run or its state read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Another process holds the job.
    #[error(
        "job {job} is running in another process ({holder}, lease until {until}); try again when it is done"
    )]
    Busy {
        /// The job.
        job: &'static str,
        /// The process running it.
        holder: String,
        /// When its lease lapses unless renewed.
        until: String,
    },
    /// The run or the read failed; the message says how.
    #[error("{0}")]
    Failed(String),
}

impl From<ControlError> for QueryError {
    fn from(err: ControlError) -> Self {
        QueryError::Internal(err.to_string())
    }
}

/// `{"job"?, "from", "to"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateRequest {
    /// A job name; all jobs when absent.
    pub job: Option<String>,
    /// Start of the range (inclusive).
    pub from: String,
    /// End of the range (exclusive).
    pub to: String,
}

/// One job's run in an aggregate reply.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Job name.
    pub job: &'static str,
    /// Buckets recomputed.
    pub periods_recomputed: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Wall time.
    pub ms: u64,
}

/// `{"runs": [...]}`.
#[derive(Debug, Serialize)]
pub struct AggregateReply {
    /// One entry per job run.
    pub runs: Vec<RunSummary>,
}

/// Recomputes now every bucket of the job (all jobs when none is named) that overlaps
/// `[from, to)`; dates name no property, so a bare date is midnight in the default
/// zone.
///
/// # Errors
/// `bad_request` for an unknown job or a bad range; `internal` when a run fails.
pub async fn aggregate(
    control: &dyn AggregationControl,
    zones: &Zones,
    request: AggregateRequest,
) -> Result<AggregateReply, QueryError> {
    let names = control.job_names();
    let jobs = match request.job.as_deref() {
        None | Some("all") => names,
        Some(name) => match names.iter().find(|n| **n == name) {
            Some(job) => vec![*job],
            None => {
                return Err(QueryError::BadRequest(format!(
                    "unknown job {name:?}; use one of {}",
                    names.join(", ")
                )));
            }
        },
    };
    let (from, to) = request_range(
        &request.from,
        &request.to,
        zones.default_zone(),
        ("from", "to"),
    )?;
    let mut runs = Vec::with_capacity(jobs.len());
    for job in jobs {
        runs.push(control.backfill(job, from, to).await?);
    }
    Ok(AggregateReply { runs })
}

/// `{}`: nothing to ask.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {}

/// One job's state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobState {
    /// Job name.
    pub job: String,
    /// Its cron expression.
    pub schedule: String,
    /// When it last ran.
    pub last_run_at: Option<String>,
    /// When it last succeeded.
    pub last_success_at: Option<String>,
    /// The end of the latest bucket it has written.
    pub watermark: Option<String>,
    /// Why its last run failed, if it did.
    pub last_error: Option<String>,
    /// Buckets queued for it (waiting to close, or late data to fold in).
    pub pending_buckets: i64,
    /// The process running it now, if one is.
    pub lease: Option<LeaseState>,
}

/// Who runs a job now.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseState {
    /// The process, `host:pid`.
    pub holder: String,
    /// Since when.
    pub since: String,
    /// When its lease lapses unless renewed.
    pub expires_at: String,
}

/// `{"instance": …, "jobs": [...]}`.
#[derive(Debug, Serialize)]
pub struct StatusReply {
    /// The instance that answered (`service.instance`); a job's lease names the
    /// process running it.
    pub instance: String,
    /// Every job, in schedule order.
    pub jobs: Vec<JobState>,
}

/// Every job's last run, last success, watermark and last error.
///
/// # Errors
/// `internal` when the state cannot be read.
pub async fn status(
    control: &dyn AggregationControl,
    instance: &str,
) -> Result<StatusReply, QueryError> {
    Ok(StatusReply {
        instance: instance.to_owned(),
        jobs: control.status().await?,
    })
}
