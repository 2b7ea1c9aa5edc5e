//! The yardsticks measured in the same run as the pipeline: what the machine can do
//! with the least code in the way.
//! - the overlapped loop: fetch from JetStream, insert with a cached prepared statement
//!   on a writer thread, ack after the commit — the three running concurrently;
//! - a bare insert: rows straight into SQLite, 1,000 per transaction;
//! - the seed's own design: Node.js, better-sqlite3, batches of 100, a 5 s flush timer;
//! - on PostgreSQL, the same loop writing with the pipeline's batch statement
//!   (`crate::postgres`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use rusqlite::{Connection, params};

use crate::ingest;
use crate::traffic::{Generated, Row};

const INSERT: &str = "INSERT OR IGNORE INTO analytics_events (id, event_type, timestamp, \
    property_id, channel, guest_id, staff_id, conversation_id, task_id, value, duration_ms, \
    metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Opens a database the way the pipeline does: WAL, `synchronous=FULL`.
pub fn open(path: &Path, synchronous: &str) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "wal")?;
    c.pragma_update(None, "synchronous", synchronous)?;
    Ok(c)
}

fn insert_rows<'a>(c: &mut Connection, rows: impl Iterator<Item = &'a Row>) -> Result<()> {
    let tx = c.transaction()?;
    {
        let mut stmt = tx.prepare_cached(INSERT)?;
        for r in rows {
            stmt.execute(params![
                r.id,
                r.event_type,
                r.timestamp,
                r.property_id,
                r.channel,
                r.guest_id,
                r.staff_id,
                r.conversation_id,
                r.task_id,
                r.value,
                r.duration_ms,
                r.metadata
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The seed's schema: its raw table and its three indexes, nothing else — the work
/// the contract asks of ingest, without the pipeline's additions.
const SEED_SCHEMA: &str = "CREATE TABLE analytics_events (
  id TEXT PRIMARY KEY, event_type TEXT NOT NULL, timestamp TEXT NOT NULL,
  property_id TEXT NOT NULL, channel TEXT, guest_id TEXT, staff_id TEXT,
  conversation_id TEXT, task_id TEXT, value REAL, duration_ms INTEGER, metadata JSON,
  date_partition TEXT GENERATED ALWAYS AS (substr(timestamp, 1, 10)) STORED);
CREATE INDEX idx_events_type_date ON analytics_events(event_type, date_partition);
CREATE INDEX idx_events_property_date ON analytics_events(property_id, date_partition);
CREATE INDEX idx_events_channel ON analytics_events(channel, date_partition);";

/// Creates `db` with the seed's schema alone.
pub fn seed_schema(db: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    open(db, "full")?.execute_batch(SEED_SCHEMA)?;
    Ok(())
}

/// Inserts rows 1,000 per transaction into `db`; returns rows per second.
pub fn bare_insert(db: &Path, rows: &[Row]) -> Result<f64> {
    let mut c = open(db, "full")?;
    let started = Instant::now();
    for chunk in rows.chunks(1000) {
        insert_rows(&mut c, chunk.iter())?;
    }
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

/// Fills `db` with `rows` quickly (no fsync, one transaction per 100,000 rows): the
/// starting content of the large-table runs, not a measurement.
pub fn prefill(db: &Path, rows: impl Iterator<Item = Row>) -> Result<u64> {
    let mut c = open(db, "off")?;
    c.pragma_update(None, "cache_size", -2_000_000)?;
    let mut n = 0u64;
    let mut batch = Vec::with_capacity(100_000);
    for r in rows {
        batch.push(r);
        if batch.len() == 100_000 {
            insert_rows(&mut c, batch.iter())?;
            n += batch.len() as u64;
            batch.clear();
        }
    }
    insert_rows(&mut c, batch.iter())?;
    n += batch.len() as u64;
    c.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    Ok(n)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming {
    id: String,
    event_type: String,
    timestamp: String,
    property_id: String,
    channel: Option<String>,
    guest_id: Option<String>,
    staff_id: Option<String>,
    conversation_id: Option<String>,
    task_id: Option<String>,
    value: Option<f64>,
    duration_ms: Option<i64>,
    metadata: Option<Box<serde_json::value::RawValue>>,
}

/// The overlapped loop consuming `events` as they are published on `stream`, into
/// `db` (on PostgreSQL, with the pipeline's batch statement for raw events and
/// nothing else); returns events per second from the first publish to the last ack.
pub async fn overlapped_loop(
    js: &jetstream::Context,
    stream: &str,
    db: LoopDb<'_>,
    events: Arc<Vec<Generated>>,
) -> Result<f64> {
    let consumer_name = "overlapped-loop";
    let consumer = js
        .get_stream(stream)
        .await?
        .create_consumer(pull::Config {
            durable_name: Some(consumer_name.into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;
    let (to_writer, mut writer_rx) =
        tokio::sync::mpsc::channel::<(Vec<Incoming>, Vec<jetstream::Message>)>(1);
    let (to_acker, mut acker_rx) =
        tokio::sync::mpsc::unbounded_channel::<Vec<jetstream::Message>>();
    let writer = match db {
        LoopDb::Sqlite(path) => {
            let mut conn = open(path, "full")?;
            let thread = std::thread::spawn(move || -> Result<()> {
                while let Some((rows, msgs)) = writer_rx.blocking_recv() {
                    let tx = conn.transaction()?;
                    {
                        let mut stmt = tx.prepare_cached(INSERT)?;
                        for r in &rows {
                            stmt.execute(params![
                                r.id,
                                r.event_type,
                                r.timestamp,
                                r.property_id,
                                r.channel,
                                r.guest_id,
                                r.staff_id,
                                r.conversation_id,
                                r.task_id,
                                r.value,
                                r.duration_ms,
                                r.metadata.as_ref().map(|m| m.get())
                            ])?;
                        }
                    }
                    tx.commit()?;
                    if to_acker.send(msgs).is_err() {
                        break;
                    }
                }
                Ok(())
            });
            Writer::Thread(thread)
        }
        LoopDb::Postgres(url) => {
            let pool = crate::postgres::pool(url).await?;
            Writer::Task(tokio::spawn(async move {
                while let Some((rows, msgs)) = writer_rx.recv().await {
                    let mut columns = crate::postgres::Columns::default();
                    for r in &rows {
                        columns.push(
                            &r.id,
                            &r.event_type,
                            &r.timestamp,
                            &r.property_id,
                            r.channel.as_deref(),
                            r.guest_id.as_deref(),
                            r.staff_id.as_deref(),
                            r.conversation_id.as_deref(),
                            r.task_id.as_deref(),
                            r.value,
                            r.duration_ms,
                            r.metadata.as_ref().map(|m| m.get()),
                        );
                    }
                    let mut tx = pool.begin().await?;
                    columns.insert(&mut tx).await?;
                    tx.commit().await?;
                    if to_acker.send(msgs).is_err() {
                        break;
                    }
                }
                anyhow::Ok(())
            }))
        }
    };
    let acker = tokio::spawn(async move {
        while let Some(msgs) = acker_rx.recv().await {
            for m in msgs {
                m.ack_with(AckKind::Ack)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
        }
        anyhow::Ok(())
    });
    let total = events.len();
    let reader = tokio::spawn(async move {
        let mut read = 0;
        while read < total {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_millis(200))
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let (mut rows, mut msgs) = (Vec::with_capacity(1000), Vec::with_capacity(1000));
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| anyhow::anyhow!(e))?;
                rows.push(serde_json::from_slice::<Incoming>(&m.payload)?);
                msgs.push(m);
            }
            read += msgs.len();
            if !msgs.is_empty() && to_writer.send((rows, msgs)).await.is_err() {
                bail!("writer thread stopped");
            }
        }
        anyhow::Ok(())
    });
    let took = ingest::timed_ingest(js, stream, consumer_name, events).await?;
    reader.await??;
    acker.abort();
    match writer {
        Writer::Thread(thread) => thread
            .join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))??,
        Writer::Task(task) => task.await??,
    }
    Ok(total as f64 / took.as_secs_f64())
}

/// Where the overlapped loop writes.
pub enum LoopDb<'a> {
    /// A SQLite file, by a thread with a cached prepared statement.
    Sqlite(&'a Path),
    /// A PostgreSQL database, by the pipeline's batch statement.
    Postgres(&'a str),
}

enum Writer {
    Thread(std::thread::JoinHandle<Result<()>>),
    Task(tokio::task::JoinHandle<Result<()>>),
}

/// The seed's design, run by Node.js from `dir` (with `npm install` done there): it
/// consumes `events` as they are published; returns events per second from the first
/// publish until it has stored them all.
pub async fn seed_node(
    dir: &Path,
    nats_url: &str,
    js: &jetstream::Context,
    stream: &str,
    db: &Path,
    events: Arc<Vec<Generated>>,
) -> Result<f64> {
    use tokio::io::AsyncBufReadExt;
    let total = events.len();
    let mut child = tokio::process::Command::new("node")
        .arg("collector.mjs")
        .args([nats_url, stream, "seed-collector"])
        .arg(db)
        .arg(total.to_string())
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start node")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    match lines.next_line().await? {
        Some(l) if l.trim() == "ready" => {}
        other => bail!("the seed collector did not start: {other:?}"),
    }
    let started = Instant::now();
    ingest::publish_all(js.clone(), events).await?;
    let status = tokio::time::timeout(Duration::from_secs(3600), child.wait()).await??;
    let took = started.elapsed();
    if !status.success() {
        bail!("the seed collector exited with {status}");
    }
    Ok(total as f64 / took.as_secs_f64())
}

/// Writes one synthetic row per day and channel into `agg_conversation_metrics_daily`
/// for `[from, to)`, where the jobs have not written one: a year of history for the
/// time-series query without a year of raw events.
pub fn daily_rows(db: &Path, property: &str, from: &str, to: &str) -> Result<()> {
    let mut c = open(db, "normal")?;
    let tx = c.transaction()?;
    tx.execute(
        "WITH RECURSIVE days(d) AS (SELECT date(?1) UNION ALL SELECT date(d, '+1 day') FROM days WHERE d < date(?2, '-1 day')) \
         INSERT OR IGNORE INTO agg_conversation_metrics_daily (period_date, property_id, channel, \
           conversations_started, conversations_resolved, conversations_escalated, avg_first_response_ms, \
           p50_first_response_ms, p95_first_response_ms, ai_handled_count, ai_escalated_count) \
         SELECT d, ?3, ch.c, 40 + (abs(random()) % 20), 30, 4, 52000, 41000, 180000, 25, 3 \
         FROM days, (SELECT 'whatsapp' AS c UNION ALL SELECT 'sms' UNION ALL SELECT 'email' UNION ALL SELECT 'webchat') ch",
        params![from, to, property],
    )?;
    tx.commit()?;
    Ok(())
}
