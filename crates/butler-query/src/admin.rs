//! `analytics.admin.aggregate` (recompute a range now) and `analytics.admin.status`
//! (how every job is doing).

use butler_aggregator::{AggregateError, Aggregator, Job};
use butler_storage::Storage;
use serde::{Deserialize, Serialize};

use crate::QueryError;
use crate::dates::parse_range;

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
#[derive(Debug, Serialize)]
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
/// `[from, to)`.
///
/// # Errors
/// `bad_request` for an unknown job or a bad range; `internal` when a run fails.
pub async fn aggregate(
    aggregator: &Aggregator,
    request: AggregateRequest,
) -> Result<AggregateReply, QueryError> {
    let jobs = match request.job.as_deref() {
        None | Some("all") => Job::ALL.to_vec(),
        Some(name) => vec![Job::parse(name).ok_or_else(|| {
            let names: Vec<_> = Job::ALL.iter().map(|j| j.name()).collect();
            QueryError::BadRequest(format!(
                "unknown job {name:?}; use one of {}",
                names.join(", ")
            ))
        })?],
    };
    let tz = aggregator.settings().default_timezone;
    let (from, to) = parse_range(&request.from, &request.to, tz, ("from", "to"))?;
    let mut runs = Vec::with_capacity(jobs.len());
    for job in jobs {
        let report = aggregator
            .backfill(job, from, to, "admin", chrono::Utc::now())
            .await
            .map_err(|e| match e {
                AggregateError::Busy(job) => QueryError::Internal(format!(
                    "job {job} is running in another process; try again when it is done"
                )),
                AggregateError::Storage(err) => {
                    QueryError::Internal(format!("job {}: database error: {err}", job.name()))
                }
            })?;
        runs.push(RunSummary {
            job: job.name(),
            periods_recomputed: report.periods_recomputed,
            rows_written: report.rows_written,
            ms: report.ms,
        });
    }
    Ok(AggregateReply { runs })
}

/// `{}`: nothing to ask.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {}

/// One job's state.
#[derive(Debug, Serialize)]
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
}

/// `{"jobs": [...]}`.
#[derive(Debug, Serialize)]
pub struct StatusReply {
    /// Every job, in schedule order.
    pub jobs: Vec<JobState>,
}

/// Every job's last run, last success, watermark and last error.
///
/// # Errors
/// `internal` when the database fails.
pub async fn status(
    storage: &Storage,
    schedules: &[(String, String)],
) -> Result<StatusReply, QueryError> {
    let states = storage.job_statuses().await?;
    let jobs = Job::ALL
        .iter()
        .map(|job| {
            let state = states
                .iter()
                .find(|s| s.job == job.name())
                .cloned()
                .unwrap_or_default();
            JobState {
                job: job.name().to_owned(),
                schedule: schedules
                    .iter()
                    .find(|(name, _)| name == job.name())
                    .map_or_else(
                        || job.default_schedule().to_owned(),
                        |(_, cron)| cron.clone(),
                    ),
                last_run_at: state.last_run_at,
                last_success_at: state.last_success_at,
                watermark: state.watermark,
                last_error: state.last_error,
                pending_buckets: state.pending_buckets,
            }
        })
        .collect();
    Ok(StatusReply { jobs })
}
