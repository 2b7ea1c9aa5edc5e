//! Cron schedules in `aggregation.timezone`, in the pipeline's own runtime.
//!
//! Next fire times are computed with `croner` in the IANA zone itself, so a schedule
//! keeps its local wall-clock time across DST changes. (tokio-cron-scheduler 0.15 keeps
//! the zone's UTC offset as it was when a job is created, so its cron jobs would fire
//! an hour off after a DST change until the process restarts.)

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::Utc;
use chrono_tz::Tz;
use croner::Cron;
use tokio_util::sync::CancellationToken;

use crate::metrics::AggregatorMetrics;
use crate::retention::{self, RetentionDays};
use crate::{AggregateError, Aggregator, Job, Trigger};

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

impl Scheduled {
    /// The next time it fires after `now`, in `zone`.
    pub fn next_after(
        &self,
        now: chrono::DateTime<Utc>,
        zone: Tz,
    ) -> Option<chrono::DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&now.with_timezone(&zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Sleeps until the wall clock reads `at`, looking at it again at least every 30 s, so
/// that a suspended machine or a stepped clock delays a run by at most that much
/// instead of shifting it (timers run on the monotonic clock). False when `shutdown`
/// came first.
async fn sleep_until_wall_clock(at: chrono::DateTime<Utc>, shutdown: &CancellationToken) -> bool {
    const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(30);
    loop {
        let Ok(left) = (at - Utc::now()).to_std() else {
            return true;
        };
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(left.min(LOOK_AGAIN)) => {}
        }
    }
}

/// Builds the schedules: the seed's cron expressions, overridden by `overrides`
/// (task name → expression).
///
/// # Errors
/// `(key, message)` naming the override at fault.
pub fn plan(overrides: &BTreeMap<String, String>) -> Result<Vec<Scheduled>, (String, String)> {
    let tasks: Vec<Task> = Job::all()
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

/// Runs one task now, recording metrics and logging the outcome. When another
/// process holds the job, returns when its lease lapses unless renewed.
pub async fn run_task(
    aggregator: &Aggregator,
    task: Task,
    trigger: Trigger,
    retention_days: RetentionDays,
    metrics: &AggregatorMetrics,
) -> Option<chrono::DateTime<Utc>> {
    let mut busy_until = None;
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
                    trigger = trigger.as_str(),
                    periods = report.periods_recomputed,
                    rows = report.rows_written,
                    ms = report.ms,
                    "aggregation run"
                );
            }
            Err(AggregateError::Busy { lease, .. }) => {
                tracing::info!(
                    job = job.name(),
                    trigger = trigger.as_str(),
                    holder = %lease.holder,
                    since = %lease.since,
                    until = %lease.expires_at,
                    "skipped: another process is running this job"
                );
                busy_until = chrono::DateTime::parse_from_rfc3339(&lease.expires_at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc));
            }
            Err(err) => {
                metrics.run_failed(job, started.elapsed().as_secs_f64());
                tracing::error!(job = job.name(), trigger = trigger.as_str(), error = %err, "aggregation run failed");
            }
        },
        Task::Retention => {
            match retention::apply(aggregator.storage(), retention_days, now).await {
                Ok(deleted) => {
                    for (table, n) in &deleted {
                        metrics.retention_deleted(table, *n);
                    }
                    let total: u64 = deleted.iter().map(|(_, n)| n).sum();
                    tracing::info!(
                        trigger = trigger.as_str(),
                        deleted = total,
                        "retention cleanup"
                    );
                }
                Err(err) => {
                    tracing::error!(trigger = trigger.as_str(), error = %err, "retention cleanup failed")
                }
            }
        }
    }
    if let Ok(statuses) = aggregator.storage().job_statuses().await {
        for s in statuses {
            metrics.set_pending(&s.job, s.pending_buckets);
        }
    }
    busy_until
}

/// The schedules and the retention they apply, replaced as a whole when the config
/// is reloaded.
#[derive(Debug, Clone)]
pub struct SchedulePlan {
    /// Every task's schedule.
    pub schedules: Vec<Scheduled>,
    /// Days each table keeps, for the retention task.
    pub retention_days: RetentionDays,
}

/// Makes up what was missed while the process was down (every job once: each one
/// recomputes the closed buckets that received events since its last run), then runs
/// every task on the plan's schedules until `shutdown`. A new plan sent on `plans`
/// (a reload) takes over once the runs in progress have finished; a run in progress
/// also finishes before shutdown.
pub async fn run(
    aggregator: Aggregator,
    mut plans: tokio::sync::watch::Receiver<SchedulePlan>,
    metrics: AggregatorMetrics,
    shutdown: CancellationToken,
) {
    let retention_days = plans.borrow_and_update().retention_days;
    let mut loops = tokio::task::JoinSet::new();
    for job in Job::all() {
        if shutdown.is_cancelled() {
            return;
        }
        let busy_until = run_task(
            &aggregator,
            Task::Aggregate(job),
            Trigger::Startup,
            retention_days,
            &metrics,
        )
        .await;
        // Held by another process: try again once its lease lapses, and again while
        // it keeps renewing (a live holder finishes the job itself).
        if let Some(until) = busy_until {
            let (aggregator, metrics, shutdown) =
                (aggregator.clone(), metrics.clone(), shutdown.clone());
            loops.spawn(async move {
                let mut until = until;
                for _ in 0..3 {
                    let wait = (until - Utc::now()).to_std().unwrap_or_default()
                        + std::time::Duration::from_secs(1);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    let task = Task::Aggregate(job);
                    match run_task(
                        &aggregator,
                        task,
                        Trigger::Startup,
                        retention_days,
                        &metrics,
                    )
                    .await
                    {
                        Some(next) => until = next,
                        None => return,
                    }
                }
            });
        }
    }
    let mut reloadable = true;
    loop {
        let plan = plans.borrow_and_update().clone();
        // The loops of this plan stop sleeping when it is replaced or at shutdown; a
        // run in progress is not interrupted.
        let this_plan = shutdown.child_token();
        let mut scheduled_loops = tokio::task::JoinSet::new();
        for scheduled in plan.schedules {
            scheduled_loops.spawn(run_on_schedule(
                aggregator.clone(),
                scheduled,
                plan.retention_days,
                metrics.clone(),
                this_plan.clone(),
            ));
        }
        let replaced = reloadable
            && tokio::select! {
                () = shutdown.cancelled() => false,
                changed = plans.changed() => changed.is_ok(),
            };
        if !replaced && !shutdown.is_cancelled() {
            // No more plans will come: this one runs until shutdown.
            reloadable = false;
            shutdown.cancelled().await;
        }
        this_plan.cancel();
        while scheduled_loops.join_next().await.is_some() {}
        if shutdown.is_cancelled() {
            break;
        }
        tracing::info!("aggregation schedules and retention reloaded");
    }
    while loops.join_next().await.is_some() {}
}

/// Runs one task at each time of its schedule until `stop`.
async fn run_on_schedule(
    aggregator: Aggregator,
    scheduled: Scheduled,
    retention_days: RetentionDays,
    metrics: AggregatorMetrics,
    stop: CancellationToken,
) {
    let timezone = aggregator.settings().zones.default_zone();
    loop {
        let Some(next) = scheduled.next_after(Utc::now(), timezone) else {
            tracing::warn!(task = scheduled.task.name(), schedule = %scheduled.expression, "schedule has no next occurrence");
            return;
        };
        if !sleep_until_wall_clock(next, &stop).await {
            return;
        }
        run_task(
            &aggregator,
            scheduled.task,
            Trigger::Schedule,
            retention_days,
            &metrics,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(text: &str) -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A daily job at 01:00 Europe/Paris fires at 01:00 local on both sides of the
    /// October change (CEST, UTC+2, until 03:00 on 25 October 2026; CET, UTC+1, after),
    /// for any "now" the clock is set to.
    #[test]
    fn a_paris_job_at_one_fires_at_one_local_across_the_october_change() {
        let plan = plan(&BTreeMap::from([(
            "daily_conversation_metrics".to_owned(),
            "0 1 * * *".to_owned(),
        )]))
        .unwrap();
        let daily = plan
            .iter()
            .find(|s| s.task == Task::Aggregate(Job::parse("daily_conversation_metrics").unwrap()))
            .unwrap();
        let paris = chrono_tz::Europe::Paris;
        let mut now = at("2026-10-23T12:00:00Z");
        let mut fired = Vec::new();
        for _ in 0..4 {
            now = daily.next_after(now, paris).unwrap();
            fired.push(now);
        }
        assert_eq!(
            fired,
            [
                at("2026-10-23T23:00:00Z"),
                at("2026-10-24T23:00:00Z"),
                at("2026-10-26T00:00:00Z"),
                at("2026-10-27T00:00:00Z"),
            ]
        );
        for t in fired {
            let local = paris.from_utc_datetime(&t.naive_utc());
            assert_eq!(local.format("%H:%M").to_string(), "01:00", "{t}");
        }
    }

    /// A clock stepped past a run's time lets the run go at once.
    #[tokio::test]
    async fn a_time_already_passed_on_the_wall_clock_does_not_wait() {
        let shutdown = CancellationToken::new();
        let started = std::time::Instant::now();
        assert!(sleep_until_wall_clock(Utc::now() - chrono::Duration::hours(1), &shutdown).await);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        shutdown.cancel();
        assert!(!sleep_until_wall_clock(Utc::now() + chrono::Duration::hours(1), &shutdown).await);
    }
}
