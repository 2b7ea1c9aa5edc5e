//! The `live_state` part: what a large live state costs ingest, what pruning it takes,
//! and whether a long run of hotel-like traffic keeps the live state flat.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use async_nats::jetstream;

use crate::figures::{Figure, Target};
use crate::procs::{self, Pipeline};
use crate::traffic::{Conversations, IdStyle, Traffic};
use crate::{Bench, DAY_MS, ingest};

/// The live-state tables, as the pipeline names them.
const TABLES: [&str; 3] = ["live_conversations", "live_staff", "live_tasks"];

/// Every aggregation job once a year, so that only retention runs during a timed run,
/// every five seconds.
const RETENTION_ONLY: &str = "{hourly_message_counts: '0 0 1 1 *', hourly_response_times: '0 0 1 1 *', \
     daily_conversation_metrics: '0 0 1 1 *', daily_staff_performance: '0 0 1 1 *', \
     daily_intent_distribution: '0 0 1 1 *', daily_channel_delivery: '0 0 1 1 *', daily_task_performance: '0 0 1 1 *', \
     daily_staff_presence: '0 0 1 1 *', \
     weekly_satisfaction_trends: '0 0 1 1 *', \
     monthly_summary: '0 0 1 1 *', retention_cleanup: '*/5 * * * * *'}";

impl Bench {
    /// Ingest of no-locality traffic into an empty database, into one holding
    /// `--past-conversations` finished conversations, and into the same after
    /// `cleanup` pruned them; then the long hotel-like run.
    pub(crate) async fn live_state(&mut self) -> Result<()> {
        if self.pg.is_some() {
            println!("live_state: skipped on PostgreSQL (the part measures the SQLite file)");
            return Ok(());
        }
        let n = self.args.events.min(300_000);
        let past = self.args.past_conversations;
        let section = "live state: a large past";
        let (day, properties) = (self.cal.day, self.args.properties);
        let what = move |db: &str| {
            format!(
                "{n} no-locality events (every event a new conversation) over a day (the runs: {day} UTC and the two days before), {properties} properties, published while consumed, into {db}; default config"
            )
        };

        let empty = self.no_locality_run(0, "ls-empty.db", n).await?;
        self.figures.push(Figure::new(
            section,
            "ingest into an empty database",
            empty,
            "events/s",
            None,
            what("an empty database"),
        ));

        let db = "ls-past.db";
        let cfg = self.config(db, "UNUSED", "unused");
        self.migrate(&cfg)?;
        let filled = Instant::now();
        fill_past_conversations(&self.dir.join(db), past, self.args.properties)?;
        println!(
            "live_state: {past} past conversations written in {:.1} s",
            filled.elapsed().as_secs_f64()
        );
        let with_past = self.no_locality_run(1, db, n).await?;
        self.figures.push(Figure::new(
            section,
            format!("ingest with {past} past conversations in live state"),
            with_past,
            "events/s",
            None,
            what(&format!(
                "a database whose live_conversations holds {past} conversations resolved 30 days ago, never pruned"
            )),
        ));
        self.figures.push(Figure::new(
            section,
            "with the past ÷ empty",
            with_past / empty,
            "x",
            None,
            "the two runs above",
        ));

        let config = cfg.write(procs::free_port()?)?;
        let (took, out) = procs::command_output(&config, &["cleanup", "--json"])?;
        let said: serde_json::Value = serde_json::from_str(&out)?;
        let pruned = said["deleted"]["live_conversations"].as_u64().unwrap_or(0);
        self.figures.push(Figure::new(
            section,
            format!("cleanup pruning {pruned} finished conversations"),
            took.as_secs_f64(),
            "s",
            None,
            "butler-analytics cleanup on that database (retention.live_state 7 days), windows of 20,000 keys per transaction",
        ));
        let after = self.no_locality_run(2, db, n).await?;
        self.figures.push(Figure::new(
            section,
            "ingest after pruning",
            after,
            "events/s",
            None,
            what("the same database after cleanup"),
        ));
        self.figures.push(Figure::new(
            section,
            "after pruning ÷ empty",
            after / empty,
            "x",
            None,
            "the runs above",
        ));
        self.long_hotel_run().await
    }

    /// One pipeline run over fresh no-locality traffic on stream `BENCH_LS<i>`, over
    /// the day `i` days before the calendar's (time-ordered ids follow the time, so a
    /// later run on the same database would otherwise repeat an earlier one's ids);
    /// events/s.
    async fn no_locality_run(&mut self, i: u64, db: &str, n: u64) -> Result<f64> {
        let (stream, prefix) = (format!("BENCH_LS{i}"), format!("bench.ls{i}"));
        let cfg = self.config(db, &stream, &prefix);
        let mut t = Traffic::new(40 + i, self.args.properties, IdStyle::TimeOrdered)
            .with_conversations(Conversations::Scattered);
        let day_ms = self.cal.day_ms - i64::try_from(i)? * DAY_MS;
        let events = Arc::new(t.spread(n, day_ms, DAY_MS, &prefix));
        let pipeline = Pipeline::start(&cfg)?;
        println!("live_state: {db}, {n} events");
        let took = ingest::timed_ingest(&self.js, &stream, "analytics-pipeline", events).await?;
        self.note_rss(&pipeline);
        pipeline.stop()?;
        Ok(n as f64 / took.as_secs_f64())
    }

    /// `--long-run-events` hotel-like events over the 60 days before the last week, so
    /// that every finished conversation is past `retention.live_state`; retention runs
    /// every five seconds. The live-state tables' rows are sampled as the run goes.
    async fn long_hotel_run(&mut self) -> Result<()> {
        let n = self.args.long_run_events;
        let section = "live state: a long hotel-like run";
        let (stream, prefix) = ("BENCH_LONG".to_owned(), "bench.long".to_owned());
        let mut cfg = self.config("ls-long.db", &stream, &prefix);
        cfg.aggregation = true;
        cfg.schedules = Some(RETENTION_ONLY.to_owned());
        ingest::ensure_stream(&self.js, &stream, &prefix).await?;
        let pipeline = Pipeline::start(&cfg)?;
        let start = self.cal.now.timestamp_millis() - 67 * DAY_MS;
        let traffic = Traffic::new(50, self.args.properties, IdStyle::TimeOrdered)
            .with_conversations(Conversations::HotelLike);
        let conversations = Arc::new(AtomicU64::new(0));
        let target = ingest::last_sequence(&self.js, &stream).await? + n;
        println!("live_state: long hotel-like run, {n} events");
        let started = Instant::now();
        let publisher = tokio::spawn(publish_generated(
            self.js.clone(),
            traffic,
            n,
            (start, 60 * DAY_MS),
            prefix,
            conversations.clone(),
        ));
        let db = self.dir.join("ls-long.db");
        let mut samples: Vec<(u64, u64)> = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let floor = ingest::ack_floor(&self.js, &stream, "analytics-pipeline").await?;
            samples.push((floor, live_rows(&db)?));
            if floor >= target {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(3 * 3600),
                "the long run did not finish in three hours"
            );
        }
        let took = started.elapsed();
        publisher.await??;
        self.note_rss(&pipeline);
        let deleted = pipeline.metric_sum("butler_analytics_retention_deleted_rows_total");
        pipeline.stop()?;
        let base = target - n;
        let half = base + n / 2;
        let peak = |first: bool| {
            samples
                .iter()
                .filter(|(floor, _)| (*floor < half) == first && *floor > base)
                .map(|(_, rows)| *rows)
                .max()
                .unwrap_or(0)
        };
        let (first, second) = (peak(true), peak(false));
        let seen = conversations.load(Ordering::Relaxed);
        let what = format!(
            "{n} hotel-like events ({seen} conversations, each started, ended and its task completed) over the 60 days before the last week, {} properties, published while consumed; retention every 5 s; live-state rows sampled every 0.5 s ({} samples)",
            self.args.properties,
            samples.len()
        );
        self.figures.push(Figure::new(
            section,
            "ingest",
            n as f64 / took.as_secs_f64(),
            "events/s",
            None,
            what.clone(),
        ));
        self.figures.push(Figure::new(
            section,
            "live-state rows, most in the first half",
            first as f64,
            "rows",
            None,
            what.clone(),
        ));
        self.figures.push(Figure::new(
            section,
            "live-state rows, most in the second half",
            second as f64,
            "rows",
            None,
            what.clone(),
        ));
        self.figures.push(Figure::new(
            section,
            "second half ÷ first half (flat: ≤ 1.5)",
            second as f64 / first.max(1) as f64,
            "x",
            Some(Target::AtMost(1.5)),
            what,
        ));
        self.figures.push(Figure::new(
            section,
            "rows retention deleted during the run",
            deleted,
            "rows",
            None,
            "butler_analytics_retention_deleted_rows_total, all tables",
        ));
        Ok(())
    }
}

/// Publishes `n` events made as they go (a long run's events would not fit in memory
/// at once), 1,000 acks in flight; counts the conversations started.
async fn publish_generated(
    js: jetstream::Context,
    mut traffic: Traffic,
    n: u64,
    (start_ms, span_ms): (i64, i64),
    prefix: String,
    conversations: Arc<AtomicU64>,
) -> Result<()> {
    let messages = (0..n).map(|i| {
        let at = start_ms + (i128::from(i) * i128::from(span_ms) / i128::from(n.max(1))) as i64;
        let e = traffic.event(at, &prefix);
        if e.row.event_type == "conversation.started" {
            conversations.fetch_add(1, Ordering::Relaxed);
        }
        (e.subject, e.payload)
    });
    ingest::publish_each(&js, messages).await
}

/// Rows in the live-state tables of the SQLite file at `db`.
fn live_rows(db: &std::path::Path) -> Result<u64> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut rows = 0;
    for table in TABLES {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        rows += u64::try_from(n).unwrap_or(0);
    }
    Ok(rows)
}

/// Writes `n` conversations resolved 30 days ago into `live_conversations`, spread
/// over `properties` properties, their ids spread evenly over the space of the random
/// ids traffic uses (so new conversations land among them), written in key order (as
/// a table grown over years would hold them, without the years).
fn fill_past_conversations(db: &std::path::Path, n: u64, properties: u64) -> Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    let resolved = (chrono::Utc::now() - chrono::Duration::days(30))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let per_property = (n / properties.max(1)).max(1);
    conn.execute(
        "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?1) \
         INSERT INTO live_conversations (property_id, conversation_id, last_event_type, \
         last_timestamp, last_event_id, active) \
         SELECT printf('prop_%03d', i / ?2), \
         printf('conv_%08x%08x', (i % ?2) * 4294967296 / ?2, (i * 2654435761) % 4294967296), \
         'conversation.resolved', ?3, printf('past_evt_%010d', i), 0 FROM k",
        rusqlite::params![i64::try_from(n)?, i64::try_from(per_property)?, resolved],
    )?;
    Ok(())
}
