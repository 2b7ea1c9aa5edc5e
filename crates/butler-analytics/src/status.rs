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

/// The durable consumer as NATS reports it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerLine {
    stream: String,
    consumer: String,
    /// Messages not yet delivered: the lag.
    pending: Option<u64>,
    /// Delivered and not yet acked.
    ack_pending: Option<usize>,
    /// Why the figures are missing (NATS unreachable, no such consumer).
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    database: String,
    backend: &'static str,
    size_bytes: u64,
    jobs: Vec<JobLine>,
    dead_letters: serde_json::Map<String, serde_json::Value>,
    consumer: ConsumerLine,
}

/// The consumer's lag, asked of NATS within a few seconds: `status` still answers,
/// saying why, when NATS cannot be reached.
async fn consumer_line(config: &Config) -> ConsumerLine {
    let ask = async {
        let options = crate::nats::options(&config.nats).await?;
        let client = options
            .connection_timeout(std::time::Duration::from_secs(2))
            .connect(crate::nats::servers(&config.nats)?)
            .await?;
        let stream = async_nats::jetstream::new(client)
            .get_stream(&config.nats.stream)
            .await?;
        anyhow::Ok(stream.consumer_info(&config.nats.consumer).await?)
    };
    let info = tokio::time::timeout(std::time::Duration::from_secs(5), ask).await;
    let (pending, ack_pending, error) = match info {
        Ok(Ok(info)) => (Some(info.num_pending), Some(info.num_ack_pending), None),
        Ok(Err(e)) => (None, None, Some(format!("{e:#}"))),
        Err(_) => (
            None,
            None,
            Some("NATS did not answer within 5 s".to_owned()),
        ),
    };
    ConsumerLine {
        stream: config.nats.stream.clone(),
        consumer: config.nats.consumer.clone(),
        pending,
        ack_pending,
        error,
    }
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
        let jobs = Job::all()
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
            consumer: ConsumerLine {
                stream: String::new(),
                consumer: String::new(),
                pending: None,
                ack_pending: None,
                error: None,
            },
        }
    });
    storage.close().await;
    let mut status = status?;
    status.consumer = consumer_line(config).await;
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
    let c = &status.consumer;
    match (c.pending, c.ack_pending, &c.error) {
        (Some(pending), Some(unacked), _) => writeln!(
            out,
            "consumer  {} on {}: {pending} waiting, {unacked} delivered and not acked",
            c.consumer, c.stream
        )?,
        (_, _, error) => writeln!(
            out,
            "consumer  {} on {}: unknown ({})",
            c.consumer,
            c.stream,
            error.as_deref().unwrap_or("no answer")
        )?,
    }
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
