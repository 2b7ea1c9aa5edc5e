//! The aggregator and report settings as the binary takes them from config, and the
//! `aggregate` and `cleanup` subcommands.

use anyhow::{Context, bail};
use butler_aggregator::retention::RetentionDays;
use butler_aggregator::{Aggregator, AggregatorSettings, Job, RunReport};
use butler_config::Config;
use butler_storage::Storage;
use chrono::{DateTime, NaiveDate, Utc};

/// Aggregator settings from a checked config.
pub fn settings(config: &Config) -> AggregatorSettings {
    AggregatorSettings {
        default_timezone: config
            .aggregation
            .timezone
            .parse()
            .unwrap_or(chrono_tz::UTC),
        property_timezones: config
            .aggregation
            .property_timezones
            .iter()
            .map(|(p, z)| (p.clone(), z.parse().unwrap_or(chrono_tz::UTC)))
            .collect(),
        raw_retention: chrono::Duration::days(i64::from(config.retention.raw_events)),
        holder: format!("{}:{}", hostname(), std::process::id()),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map_or_else(|_| "localhost".into(), |h| h.trim().to_owned())
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
    }
}

/// Checks the schedules, naming the config key at fault.
///
/// # Errors
/// The key and what is wrong.
pub fn schedules(config: &Config) -> anyhow::Result<Vec<butler_aggregator::schedule::Scheduled>> {
    butler_aggregator::schedule::plan(&config.aggregation.schedules)
        .map_err(|(key, message)| anyhow::anyhow!("config key `{key}`: {message}"))
}

/// A date (`YYYY-MM-DD`, midnight in `tz`) or an RFC 3339 instant.
///
/// # Errors
/// When it is neither.
pub fn parse_instant(value: &str, tz: chrono_tz::Tz, what: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(date) => Ok(butler_aggregator::buckets::start_of_local_date(tz, date)),
        Err(_) => bail!("{what} {value:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"),
    }
}

/// The jobs `name` stands for (`all` or one name).
///
/// # Errors
/// When it names no job.
pub fn jobs_named(name: &str) -> anyhow::Result<Vec<Job>> {
    if name == "all" {
        return Ok(Job::ALL.to_vec());
    }
    match Job::parse(name) {
        Some(job) => Ok(vec![job]),
        None => {
            let names: Vec<_> = Job::ALL.iter().map(|j| j.name()).collect();
            bail!(
                "unknown job {name:?}; use all or one of {}",
                names.join(", ")
            )
        }
    }
}

/// Backfills `jobs` over `[from, to)`.
///
/// # Errors
/// A reversed range or a failed run.
pub async fn backfill(
    storage: &Storage,
    config: &Config,
    jobs: &[Job],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    trigger: &str,
) -> anyhow::Result<Vec<RunReport>> {
    if from >= to {
        bail!("the range is empty: from {from} is not before to {to}");
    }
    let aggregator = Aggregator::new(storage.clone(), settings(config));
    let mut reports = Vec::new();
    for job in jobs {
        let report = aggregator
            .backfill(*job, from, to, trigger, Utc::now())
            .await
            .with_context(|| format!("job {}", job.name()))?;
        reports.push(report);
    }
    Ok(reports)
}

/// Runs `jobs` as their schedules would, now.
///
/// # Errors
/// A failed run, or a job held by another process.
pub async fn run_due(
    storage: &Storage,
    config: &Config,
    jobs: &[Job],
) -> anyhow::Result<Vec<RunReport>> {
    let aggregator = Aggregator::new(storage.clone(), settings(config));
    let mut reports = Vec::new();
    for job in jobs {
        let report = aggregator
            .run_due(*job, "cli", Utc::now())
            .await
            .with_context(|| format!("job {}", job.name()))?;
        reports.push(report);
    }
    Ok(reports)
}

/// Report settings from config.
pub fn report_settings(config: &Config) -> butler_query::report::ReportSettings {
    butler_query::report::ReportSettings {
        enabled: config.reports.enabled,
        formats: config
            .reports
            .formats
            .iter()
            .map(|f| match f {
                butler_config::ReportFormat::Json => "json",
                butler_config::ReportFormat::Csv => "csv",
            })
            .collect(),
        storage: config.reports.storage.clone(),
    }
}

/// The report schedules of `reports.schedule`, checked.
///
/// # Errors
/// The key and what is wrong.
pub fn report_schedules(
    config: &Config,
) -> anyhow::Result<Vec<butler_query::scheduled::ReportSchedule>> {
    let entries: Vec<(&'static str, String)> = config
        .reports
        .schedule
        .iter()
        .map(|s| {
            let t = match s.report_type {
                butler_config::ReportType::Daily => "daily",
                butler_config::ReportType::Weekly => "weekly",
                butler_config::ReportType::Monthly => "monthly",
            };
            (t, s.cron.clone())
        })
        .collect();
    butler_query::scheduled::plan(&entries)
        .map_err(|(key, message)| anyhow::anyhow!("config key `{key}`: {message}"))
}
