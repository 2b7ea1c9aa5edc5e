//! `butler-analytics status`: how the pipeline stands, read from the database itself,
//! so it answers with the pipeline stopped: each job's last run, last success, next
//! run, queue and lease; dead letters by reason; the database and its size.

use std::io::Write;

use anyhow::Context;
use butler_aggregator::Job;
use butler_aggregator::schedule::Scheduled;
use butler_config::Config;
use butler_storage::aggregation::{JobStatus, Lease};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::app;
use crate::output::{Output, print};

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
    let database = read_database(config).await?;
    let zone = config.zones().default_zone();
    let status = Status {
        jobs: job_lines(&database, &schedules, zone, Utc::now()),
        database: database.describe,
        backend: database.backend,
        size_bytes: database.size_bytes,
        dead_letters: database
            .dead_letters
            .into_iter()
            .map(|(reason, n)| (reason, serde_json::Value::from(n)))
            .collect(),
        // Asked after the database is closed: NATS may take seconds to answer.
        consumer: consumer_line(config).await,
    };
    print(json, &status)
}

/// What `status` reads from the database, in one go, so the database is closed before
/// NATS is asked.
struct DatabaseState {
    describe: String,
    backend: &'static str,
    size_bytes: u64,
    jobs: Vec<JobStatus>,
    leases: Vec<Lease>,
    dead_letters: Vec<(String, i64)>,
}

/// Opens the database, reads what `status` shows and closes it again, also when a
/// read fails.
async fn read_database(config: &Config) -> anyhow::Result<DatabaseState> {
    let storage = app::open_storage(config).await?;
    let read = async {
        anyhow::Ok(DatabaseState {
            describe: storage.describe(),
            backend: storage.backend_name(),
            jobs: storage.job_statuses().await?,
            leases: storage.leases().await?,
            dead_letters: storage.dead_letter_counts().await?,
            size_bytes: storage.size_bytes().await?,
        })
    }
    .await
    .context("reading the status");
    storage.close().await;
    read
}

/// Every job, in [`Job::all`]'s order, whether or not it has run: its state, its
/// schedule (configured or default), its next run after `now` in `zone`, and its lease.
fn job_lines(
    database: &DatabaseState,
    schedules: &[Scheduled],
    zone: Tz,
    now: DateTime<Utc>,
) -> Vec<JobLine> {
    Job::all()
        .map(|job| {
            let state = database
                .jobs
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
                    .and_then(|s| s.next_after(now, zone))
                    .map(|t| butler_events::EventTime::from_datetime(&t).to_string()),
                pending_buckets: state.pending_buckets,
                last_error: state.last_error,
                lease: database
                    .leases
                    .iter()
                    .find(|l| l.name == job.lease_name())
                    .map(|l| LeaseLine {
                        holder: l.holder.clone(),
                        since: l.since.clone(),
                        expires_at: l.expires_at.clone(),
                    }),
            }
        })
        .collect()
}

impl Output for Status {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(out, "{}", serde_json::to_string(self)?)?;
        Ok(())
    }

    /// The database and the consumer, a table of the jobs, the dead letters by reason.
    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "database  {} ({}, {} bytes)",
            self.database, self.backend, self.size_bytes
        )?;
        self.consumer.text(out)?;
        write_jobs(out, &self.jobs)?;
        write_dead_letters(out, &self.dead_letters)
    }
}

impl ConsumerLine {
    /// The lag, or why it is unknown.
    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        match (self.pending, self.ack_pending, &self.error) {
            (Some(pending), Some(unacked), _) => writeln!(
                out,
                "consumer  {} on {}: {pending} waiting, {unacked} delivered and not acked",
                self.consumer, self.stream
            )?,
            (_, _, error) => writeln!(
                out,
                "consumer  {} on {}: unknown ({})",
                self.consumer,
                self.stream,
                error.as_deref().unwrap_or("no answer")
            )?,
        }
        Ok(())
    }
}

/// The jobs as a table, a job's last error on a line of its own under it.
fn write_jobs(out: &mut dyn Write, jobs: &[JobLine]) -> anyhow::Result<()> {
    writeln!(
        out,
        "\n{:<28} {:<12} {:<24} {:<24} {:<24} {:>7}  lease",
        "job", "schedule", "last success", "last run", "next run", "pending"
    )?;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for j in jobs {
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
    Ok(())
}

/// The dead letters not replayed, by reason.
fn write_dead_letters(
    out: &mut dyn Write,
    dead_letters: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    writeln!(out, "\ndead letters not replayed")?;
    if dead_letters.is_empty() {
        writeln!(out, "  none")?;
    }
    for (reason, n) in dead_letters {
        writeln!(out, "  {reason:<24} {n}")?;
    }
    Ok(())
}
