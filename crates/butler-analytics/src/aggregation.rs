//! The aggregator as the binary wires it from config: the aggregator's settings, the
//! schedules, the admin requests' access to the aggregator, and the `aggregate`
//! subcommand's runs. The reports are wired in [`crate::reports`].

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use butler_aggregator::retention::RetentionDays;
use butler_aggregator::schedule::{SchedulePlan, Scheduled};
use butler_aggregator::{AggregateError, Aggregator, AggregatorSettings, Job, RunReport, Trigger};
use butler_config::Config;
use butler_query::admin::{AggregationControl, ControlError, JobState, LeaseState, RunSummary};
use butler_storage::tables::BucketRows;
use butler_storage::{Storage, StorageError};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

/// The aggregator over `storage`, with the settings of a checked config.
pub fn aggregator(storage: Storage, config: &Config) -> Aggregator {
    Aggregator::new(
        storage,
        AggregatorSettings {
            zones: config.zones(),
            raw_retention: chrono::Duration::days(i64::from(config.retention.raw_events)),
            holder: butler_aggregator::lease::this_holder(),
            lease_ttl: std::time::Duration::from_millis(config.aggregation.lease_ms),
            rules: butler_aggregator::SharedRules::new(config.business_rules()),
        },
    )
}

/// Retention days from config.
pub fn retention_days(config: &Config) -> RetentionDays {
    let r = &config.retention;
    RetentionDays {
        raw_events: r.raw_events,
        hourly: r.hourly_aggregations,
        daily: r.daily_aggregations,
        weekly: r.weekly_aggregations,
        monthly: r.monthly_aggregations,
        live_state: r.live_state,
    }
}

/// Checks the schedules, naming the config key at fault.
///
/// # Errors
/// The key and what is wrong.
pub fn schedules(config: &Config) -> anyhow::Result<Vec<Scheduled>> {
    butler_aggregator::schedule::plan(&config.aggregation.schedules)
        .map_err(|(key, message)| anyhow::anyhow!("config key `{key}`: {message}"))
}

/// The schedules and retention of the config, as the aggregation loop runs them.
///
/// # Errors
/// A bad cron expression, naming its key.
pub fn schedule_plan(config: &Config) -> anyhow::Result<SchedulePlan> {
    Ok(SchedulePlan {
        schedules: schedules(config)?,
        retention_days: retention_days(config),
    })
}

/// Checks every cron expression of the config (`aggregation.schedules`,
/// `reports.schedule`), so that a bad one stops any command as a config error.
///
/// # Errors
/// The first bad expression, naming its key.
pub fn check_schedules(config: &Config) -> anyhow::Result<()> {
    schedules(config)?;
    crate::reports::report_schedules(config)?;
    Ok(())
}

/// The jobs `name` stands for (`all` or one name).
///
/// # Errors
/// When it names no job.
pub fn jobs_named(name: &str) -> anyhow::Result<Vec<Job>> {
    if name == "all" {
        return Ok(Job::all().collect());
    }
    match Job::parse(name) {
        Some(job) => Ok(vec![job]),
        None => {
            let names: Vec<_> = Job::all().map(Job::name).collect();
            bail!(
                "unknown job {name:?}; use all or one of {}",
                names.join(", ")
            )
        }
    }
}

/// A job held by another process for longer than `--wait`: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JobBusy(pub String);

/// Runs `run` for `job`, waiting up to `wait` (saying so once) while another process
/// holds the job.
///
/// # Errors
/// [`JobBusy`] when the job is still held after `wait`; a failed run.
async fn waiting<F, Fut>(job: Job, wait: Duration, run: F) -> anyhow::Result<RunReport>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<RunReport, AggregateError>>,
{
    let deadline = Instant::now() + wait;
    let mut said = false;
    loop {
        match run().await {
            Err(AggregateError::Busy { lease, .. }) => {
                let held = format!(
                    "job {} is held by {} since {}, until {} unless it renews",
                    job.name(),
                    lease.holder,
                    lease.since,
                    lease.expires_at
                );
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(JobBusy(format!(
                        "{held}; gave up after waiting {} s (--wait)",
                        wait.as_secs()
                    ))
                    .into());
                }
                if !said {
                    eprintln!("{held}; waiting up to {} s", wait.as_secs());
                    said = true;
                }
                tokio::time::sleep(left.min(Duration::from_millis(500))).await;
            }
            other => return other.with_context(|| format!("job {}", job.name())),
        }
    }
}

/// Backfills `jobs` over `[from, to)`, each waiting up to `wait` for another process
/// that holds it.
///
/// # Errors
/// A reversed range, a job held past `wait`, or a failed run.
pub async fn backfill(
    aggregator: &Aggregator,
    jobs: &[Job],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    wait: Duration,
) -> anyhow::Result<Vec<RunReport>> {
    if from >= to {
        bail!("the range is empty: from {from} is not before to {to}");
    }
    let mut reports = Vec::new();
    for job in jobs {
        let report = waiting(*job, wait, || {
            aggregator.backfill(*job, from, to, Trigger::Cli, Utc::now())
        })
        .await?;
        reports.push(report);
    }
    Ok(reports)
}

/// Runs `jobs` as their schedules would, now, each waiting up to `wait` for another
/// process that holds it.
///
/// # Errors
/// A job held past `wait`, or a failed run.
pub async fn run_due(
    aggregator: &Aggregator,
    jobs: &[Job],
    wait: Duration,
) -> anyhow::Result<Vec<RunReport>> {
    let mut reports = Vec::new();
    for job in jobs {
        let report = waiting(*job, wait, || {
            aggregator.run_due(*job, Trigger::Cli, Utc::now())
        })
        .await?;
        reports.push(report);
    }
    Ok(reports)
}

/// The admin requests' way to the aggregator this process runs.
pub struct AdminControl {
    /// Runs the backfills.
    pub aggregator: Aggregator,
    /// Each job's schedule as configured (and reloaded), for the status reply.
    pub plans: tokio::sync::watch::Receiver<SchedulePlan>,
}

impl AggregationControl for AdminControl {
    fn job_names(&self) -> Vec<&'static str> {
        Job::all().map(Job::name).collect()
    }

    fn backfill(
        &self,
        job: &'static str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<RunSummary, ControlError>> {
        Box::pin(async move {
            let job = Job::parse(job).ok_or(ControlError::Failed(format!("unknown job {job}")))?;
            let report = self
                .aggregator
                .backfill(job, from, to, Trigger::Admin, Utc::now())
                .await
                .map_err(|e| match e {
                    AggregateError::Busy { job, lease } => ControlError::Busy {
                        job,
                        holder: lease.holder,
                        until: lease.expires_at,
                    },
                    AggregateError::Storage(err) => {
                        ControlError::Failed(format!("job {}: database error: {err}", job.name()))
                    }
                    lost @ AggregateError::LeaseLost(_) => ControlError::Failed(lost.to_string()),
                })?;
            Ok(RunSummary {
                job: job.name(),
                periods_recomputed: report.periods_recomputed,
                rows_written: report.rows_written,
                ms: report.ms,
            })
        })
    }

    fn unmaterialized<'a>(
        &'a self,
        job: &'static str,
        property: &'a str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<(String, BucketRows)>, ControlError>> {
        Box::pin(async move {
            let job = Job::parse(job).ok_or(ControlError::Failed(format!("unknown job {job}")))?;
            self.aggregator
                .unmaterialized(job, property, from, to, Utc::now())
                .await
                .map_err(|e| ControlError::Failed(format!("job {}: {e}", job.name())))
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<Vec<JobState>, ControlError>> {
        Box::pin(async move {
            let failed = |err: StorageError| ControlError::Failed(format!("database error: {err}"));
            let storage = self.aggregator.storage();
            let states = storage.job_statuses().await.map_err(failed)?;
            let leases = storage.leases().await.map_err(failed)?;
            Ok(Job::all()
                .map(|job| {
                    let state = states
                        .iter()
                        .find(|s| s.job == job.name())
                        .cloned()
                        .unwrap_or_default();
                    JobState {
                        job: job.name().to_owned(),
                        schedule: self
                            .plans
                            .borrow()
                            .schedules
                            .iter()
                            .find(|s| s.task.name() == job.name())
                            .map_or_else(
                                || job.default_schedule().to_owned(),
                                |s| s.expression.clone(),
                            ),
                        last_run_at: state.last_run_at,
                        last_success_at: state.last_success_at,
                        watermark: state.watermark,
                        last_error: state.last_error,
                        pending_buckets: state.pending_buckets,
                        lease: leases.iter().find(|l| l.name == job.lease_name()).map(|l| {
                            LeaseState {
                                holder: l.holder.clone(),
                                since: l.since.clone(),
                                expires_at: l.expires_at.clone(),
                            }
                        }),
                    }
                })
                .collect())
        })
    }
}
