//! `butler-analytics status`: how the pipeline stands, read from the database itself,
//! so it answers with the pipeline stopped: each job's last run, last success, next
//! run, queue and lease; dead letters by reason; the database and its size.

use std::io::Write;

use anyhow::Context;
use butler_aggregator::Job;
use butler_config::Config;
use chrono::Utc;
use serde::Serialize;

use crate::app;

/// One job, as `status` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobLine {
    job: &'static str,
    schedule: String,
    last_run_at: Option<String>,
    last_success_at: Option<String>,
    next_run_at: Option<String>,
    pending_buckets: i64,
    last_error: Option<String>,
    lease: Option<LeaseLine>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LeaseLine {
    holder: String,
    since: String,
    expires_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    database: String,
    backend: &'static str,
    size_bytes: u64,
    jobs: Vec<JobLine>,
    dead_letters: serde_json::Map<String, serde_json::Value>,
}

/// Prints the status, as a table or (`json`) as one JSON object.
///
/// # Errors
/// When the database cannot be read.
pub async fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let schedules = crate::aggregation::schedules(config)?;
    let storage = app::open_storage(config).await?;
    let read = async {
        let states = storage.job_statuses().await?;
        let leases = storage.leases().await?;
        let dead = storage.dead_letter_counts().await?;
        let size = storage.size_bytes().await?;
        anyhow::Ok((states, leases, dead, size))
    }
    .await
    .context("reading the status");
    let status = read.map(|(states, leases, dead, size)| {
        let zone = config.zones().default_zone();
        let jobs = Job::ALL
            .iter()
            .map(|job| {
                let state = states
                    .iter()
                    .find(|s| s.job == job.name())
                    .cloned()
                    .unwrap_or_default();
                let scheduled = schedules.iter().find(|s| s.task.name() == job.name());
                JobLine {
                    job: job.name(),
                    schedule: scheduled.map_or_else(
                        || job.default_schedule().to_owned(),
                        |s| s.expression.clone(),
                    ),
                    last_run_at: state.last_run_at,
                    last_success_at: state.last_success_at,
                    next_run_at: scheduled
                        .and_then(|s| s.next_after(Utc::now(), zone))
                        .map(|t| butler_events::EventTime::from_datetime(&t).to_string()),
                    pending_buckets: state.pending_buckets,
                    last_error: state.last_error,
                    lease: leases
                        .iter()
                        .find(|l| l.name == format!("aggregate:{}", job.name()))
                        .map(|l| LeaseLine {
                            holder: l.holder.clone(),
                            since: l.since.clone(),
                            expires_at: l.expires_at.clone(),
                        }),
                }
            })
            .collect();
        Status {
            database: storage.describe(),
            backend: storage.backend_name(),
            size_bytes: size,
            jobs,
            dead_letters: dead
                .into_iter()
                .map(|(reason, n)| (reason, serde_json::Value::from(n)))
                .collect(),
        }
    });
    storage.close().await;
    let status = status?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&status)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "database  {} ({}, {} bytes)",
        status.database, status.backend, status.size_bytes
    )?;
    writeln!(
        out,
        "\n{:<28} {:<12} {:<24} {:<24} {:<24} {:>7}  lease",
        "job", "schedule", "last success", "last run", "next run", "pending"
    )?;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for j in &status.jobs {
        let lease = j.lease.as_ref().map_or_else(
            || "-".to_owned(),
            |l| format!("{} since {} until {}", l.holder, l.since, l.expires_at),
        );
        writeln!(
            out,
            "{:<28} {:<12} {:<24} {:<24} {:<24} {:>7}  {lease}",
            j.job,
            j.schedule,
            or_dash(&j.last_success_at),
            or_dash(&j.last_run_at),
            or_dash(&j.next_run_at),
            j.pending_buckets
        )?;
        if let Some(err) = &j.last_error {
            writeln!(out, "{:<28} last error: {err}", "")?;
        }
    }
    writeln!(out, "\ndead letters not replayed")?;
    if status.dead_letters.is_empty() {
        writeln!(out, "  none")?;
    }
    for (reason, n) in &status.dead_letters {
        writeln!(out, "  {reason:<24} {n}")?;
    }
    Ok(())
}
