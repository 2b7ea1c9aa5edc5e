//! Cron schedules in `aggregation.timezone`, in the pipeline's own runtime.
//!
//! Next fire times are computed with `croner` in the IANA zone itself, so a schedule
//! keeps its local wall-clock time across DST changes. (tokio-cron-scheduler 0.15 keeps
//! the zone's UTC offset as it was when a job is created, so its cron jobs would fire
//! an hour off after a DST change until the process restarts.)

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::Utc;
use croner::Cron;
use tokio_util::sync::CancellationToken;

use crate::metrics::AggregatorMetrics;
use crate::retention::{self, RetentionDays};
use crate::{AggregateError, Aggregator, Job};

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// An aggregation job.
    Aggregate(Job),
    /// The retention cleanup.
    Retention,
}

impl Task {
    /// The name used in config keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Task::Aggregate(job) => job.name(),
            Task::Retention => "retention_cleanup",
        }
    }
}

/// When retention runs by default: daily, before the daily jobs.
pub const RETENTION_SCHEDULE: &str = "30 0 * * *";

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// What runs.
    pub task: Task,
    /// When, as written.
    pub expression: String,
    cron: Cron,
}

/// Builds the schedules: the seed's cron expressions, overridden by `overrides`
/// (task name → expression).
///
/// # Errors
/// `(key, message)` naming the override at fault.
pub fn plan(overrides: &BTreeMap<String, String>) -> Result<Vec<Scheduled>, (String, String)> {
    let tasks: Vec<Task> = Job::ALL
        .into_iter()
        .map(Task::Aggregate)
        .chain([Task::Retention])
        .collect();
    if let Some(unknown) = overrides
        .keys()
        .find(|k| !tasks.iter().any(|t| t.name() == *k))
    {
        let names: Vec<_> = tasks.iter().map(|t| t.name()).collect();
        return Err((
            format!("aggregation.schedules.{unknown}"),
            format!("is not a job; use one of {}", names.join(", ")),
        ));
    }
    tasks
        .into_iter()
        .map(|task| {
            let expression = overrides
                .get(task.name())
                .cloned()
                .unwrap_or_else(|| match task {
                    Task::Aggregate(job) => job.default_schedule().to_owned(),
                    Task::Retention => RETENTION_SCHEDULE.to_owned(),
                });
            let cron = Cron::from_str(&expression).map_err(|e| {
                (
                    format!("aggregation.schedules.{}", task.name()),
                    format!("{expression:?} is not a cron expression: {e}"),
                )
            })?;
            Ok(Scheduled {
                task,
                expression,
                cron,
            })
        })
        .collect()
}

/// Runs one task now, recording metrics and logging the outcome.
pub async fn run_task(
    aggregator: &Aggregator,
    task: Task,
    trigger: &str,
    retention_days: RetentionDays,
    metrics: &AggregatorMetrics,
) {
    let started = std::time::Instant::now();
    let now = Utc::now();
    match task {
        Task::Aggregate(job) => match aggregator.run_due(job, trigger, now).await {
            Ok(report) => {
                metrics.run_succeeded(
                    job,
                    started.elapsed().as_secs_f64(),
                    report.periods_recomputed,
                    report.rows_written,
                );
                tracing::info!(
                    job = job.name(),
                    trigger,
                    periods = report.periods_recomputed,
                    rows = report.rows_written,
                    ms = report.ms,
                    "aggregation run"
                );
            }
            Err(AggregateError::Busy(_)) => {
                tracing::info!(
                    job = job.name(),
                    trigger,
                    "skipped: another process is running this job"
                );
            }
            Err(err) => {
                metrics.run_failed(job, started.elapsed().as_secs_f64());
                tracing::error!(job = job.name(), trigger, error = %err, "aggregation run failed");
            }
        },
        Task::Retention => {
            match retention::apply(aggregator.storage(), retention_days, now).await {
                Ok(deleted) => {
                    for (table, n) in &deleted {
                        metrics.retention_deleted(table, *n);
                    }
                    let total: u64 = deleted.iter().map(|(_, n)| n).sum();
                    tracing::info!(trigger, deleted = total, "retention cleanup");
                }
                Err(err) => tracing::error!(trigger, error = %err, "retention cleanup failed"),
            }
        }
    }
    if let Ok(statuses) = aggregator.storage().job_statuses().await {
        for s in statuses {
            metrics.set_pending(&s.job, s.pending_buckets);
        }
    }
}

/// Makes up what was missed while the process was down (every job once: each one
/// recomputes the closed buckets that received events since its last run), then runs
/// every task on its schedule until `shutdown`. A run in progress finishes first.
pub async fn run(
    aggregator: Aggregator,
    schedules: Vec<Scheduled>,
    retention_days: RetentionDays,
    metrics: AggregatorMetrics,
    shutdown: CancellationToken,
) {
    for job in Job::ALL {
        if shutdown.is_cancelled() {
            return;
        }
        run_task(
            &aggregator,
            Task::Aggregate(job),
            "startup",
            retention_days,
            &metrics,
        )
        .await;
    }
    let timezone = aggregator.settings().zones.default_zone();
    let mut loops = tokio::task::JoinSet::new();
    for scheduled in schedules {
        let aggregator = aggregator.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        loops.spawn(async move {
            loop {
                let now = Utc::now().with_timezone(&timezone);
                let Ok(next) = scheduled.cron.find_next_occurrence(&now, false) else {
                    tracing::warn!(task = scheduled.task.name(), schedule = %scheduled.expression, "schedule has no next occurrence");
                    return;
                };
                let wait = (next.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                run_task(&aggregator, scheduled.task, "schedule", retention_days, &metrics).await;
            }
        });
    }
    while loops.join_next().await.is_some() {}
}
