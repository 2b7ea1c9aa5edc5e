//! `butler-bench`: the pipeline measured end to end on this machine — ingest,
//! aggregation and queries — against its own nats-server, with the baselines that say
//! what the machine itself can do measured in the same run. `make bench` runs it;
//! `--quick` is the smoke run `make test` keeps from rotting.

mod baselines;
mod figures;
mod ingest;
mod live_state;
mod postgres;
mod procs;
mod queries;
mod traffic;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use clap::Parser;

use figures::{Figure, Target};
use procs::{NatsServer, Pipeline, PipelineConfig};
use traffic::{Conversations, IdStyle, Traffic};

const DAY_MS: i64 = 86_400_000;

/// The PostgreSQL database standing for the SQLite file `db` (`a.db` → `bench_a`).
fn pg_name(db: &str) -> String {
    format!(
        "bench_{}",
        db.trim_end_matches(".db").replace(['.', '-'], "_")
    )
}
const HOUR_MS: i64 = 3_600_000;

/// What to run, and how big.
#[derive(Debug, Clone, Parser, serde::Serialize)]
#[command(
    name = "butler-bench",
    about = "Benchmarks butler-analytics end to end"
)]
struct Args {
    /// Events per ingest run (the empty-table and the large-table runs).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Rows already in the raw table for the large-table run (spread over 30 days).
    #[arg(long, default_value_t = 10_000_000)]
    prefill: u64,
    /// Finished conversations already in live state for the `live_state` part.
    #[arg(long, default_value_t = 10_000_000)]
    past_conversations: u64,
    /// Events of the `live_state` part's long hotel-like run.
    #[arg(long, default_value_t = 10_000_000)]
    long_run_events: u64,
    /// Offered rate of the latency run, events/s.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 15)]
    latency_secs: u64,
    /// Requests per query kind.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Concurrent requesters.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Hotels the traffic is spread over.
    #[arg(long, default_value_t = 20)]
    properties: u64,
    /// `ingest.batch_size` of the pipeline (its default when absent).
    #[arg(long)]
    batch_size: Option<u32>,
    /// Skip the seed design's Node.js baseline.
    #[arg(long)]
    no_seed_node: bool,
    /// Keep the run's databases (files, or PostgreSQL databases `bench_*`) for
    /// inspection instead of removing them at the end.
    #[arg(long)]
    keep_databases: bool,
    /// On PostgreSQL, run the `aggregation` and `queries` parts without `empty`, on
    /// the database an earlier run of the same day kept (`--keep-databases`).
    #[arg(long)]
    reuse_databases: bool,
    /// Parts to run, comma-separated: `empty` (ingest into an empty table, baselines,
    /// latency), `workloads` (hotel-like and no-locality traffic against the seed
    /// schema's loop, with CPU per event; SQLite), `aggregation` and `queries` (both on
    /// the `empty` run's database), `large` (ingest into a large table, hourly run,
    /// backfill), `live_state` (ingest beside a large live state, pruning it, and a
    /// long hotel-like run whose live state must stay flat; SQLite).
    #[arg(
        long,
        default_value = "empty,workloads,aggregation,queries,large,live_state",
        value_delimiter = ','
    )]
    parts: Vec<String>,
    /// With `--backend postgres`: ingest and query throughput with each of these
    /// numbers of instances on one database and one durable consumer, e.g. `1,2,3`
    /// (run after the parts; `--parts instances` runs this alone).
    #[arg(long, value_delimiter = ',')]
    instances: Vec<usize>,
    /// A small run of every part (seconds, not minutes): the smoke test.
    #[arg(long)]
    quick: bool,
    /// Where databases, logs and results go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The database the pipeline runs on: `sqlite` (a file per run) or `postgres` (a
    /// database per run on the server at --postgres-url).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    backend: String,
    /// The PostgreSQL server for `--backend postgres`: the URL of a database there that
    /// the benchmark may connect to to create its own.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
}

impl Args {
    fn effective(mut self) -> Args {
        if self.quick {
            self.events = self.events.min(6_000);
            self.prefill = self.prefill.min(30_000);
            self.past_conversations = self.past_conversations.min(50_000);
            self.long_run_events = self.long_run_events.min(60_000);
            self.rate = self.rate.min(2_000);
            self.latency_secs = self.latency_secs.min(2);
            self.requests = self.requests.min(64);
            self.no_seed_node = true;
        }
        self
    }
}

/// The dates a run uses, relative to now so every bucket is closed and retained.
struct Calendar {
    now: DateTime<Utc>,
    /// The day of the empty-table run (three days ago, UTC).
    day: NaiveDate,
    day_ms: i64,
    /// A closed hour two hours ago, for the hourly runs.
    hour_ms: i64,
}

impl Calendar {
    fn new() -> Calendar {
        let now = Utc::now();
        let day = (now - chrono::Duration::days(3)).date_naive();
        let day_ms = day
            .and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp_millis());
        let hour_ms = (now.timestamp_millis() / HOUR_MS - 2) * HOUR_MS;
        Calendar {
            now,
            day,
            day_ms,
            hour_ms,
        }
    }

    fn date(&self, offset_days: i64) -> String {
        let d = if offset_days >= 0 {
            self.day + Days::new(offset_days.unsigned_abs())
        } else {
            self.day - Days::new(offset_days.unsigned_abs())
        };
        d.to_string()
    }
}

struct Bench {
    args: Args,
    dir: PathBuf,
    nats: NatsServer,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    cal: Calendar,
    figures: Vec<Figure>,
    peak_rss_kib: u64,
    hourly_small: Option<f64>,
    /// The PostgreSQL server, with `--backend postgres`.
    pg: Option<postgres::PgBench>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse().effective();
    // Absolute, because the seed baseline runs from another directory.
    args.out = std::path::absolute(&args.out)?;
    let run_dir = args
        .out
        .join(format!("run-{}", Utc::now().format("%Y%m%dT%H%M%SZ")));
    std::fs::create_dir_all(&run_dir)?;
    let nats = NatsServer::start(&run_dir)?;
    let client = async_nats::connect(&nats.url).await?;
    let js = async_nats::jetstream::new(client.clone());
    println!(
        "butler-bench: {} ({}), results under {}",
        nats.version,
        nats.url,
        run_dir.display()
    );
    let mut bench = Bench {
        args: args.clone(),
        dir: run_dir.clone(),
        nats,
        client,
        js,
        cal: Calendar::new(),
        figures: Vec::new(),
        peak_rss_kib: 0,
        hourly_small: None,
        pg: (args.backend == "postgres").then(|| postgres::PgBench::new(&args.postgres_url)),
    };
    bench.run().await?;
    let table = figures::table(&bench.figures);
    println!("\n{table}");
    let run = serde_json::json!({
        "at": bench.cal.now.to_rfc3339(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "args": args,
        "natsServer": bench.nats.version,
        "backend": args.backend,
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
    });
    let json = run_dir.join("results.json");
    figures::write_json(&json, &run, &bench.figures)?;
    figures::write_json(&args.out.join("latest.json"), &run, &bench.figures)?;
    std::fs::write(run_dir.join("results.txt"), &table)?;
    println!(
        "written: {} and {}",
        json.display(),
        args.out.join("latest.json").display()
    );
    for db in ["a.db", "b.db", "c.db", "d.db", "e.db", "f.db", "g.db"] {
        if args.keep_databases {
            break;
        }
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(run_dir.join(format!("{db}{suffix}")));
        }
        if let Some(pg) = &bench.pg {
            pg.drop_database(&pg_name(db)).await?;
        }
    }
    Ok(())
}

impl Bench {
    async fn run(&mut self) -> Result<()> {
        let part = |p: &str| self.args.parts.iter().any(|x| x == p);
        let (empty, workloads, aggregation, queries, large, live_state) = (
            part("empty"),
            part("workloads"),
            part("aggregation"),
            part("queries"),
            part("large"),
            part("live_state"),
        );
        anyhow::ensure!(
            empty || self.args.reuse_databases || !(aggregation || queries),
            "the aggregation and queries parts read the database of the empty part \
             (or, with --reuse-databases, the one an earlier run kept)"
        );
        if empty {
            self.ingest_empty().await?;
        }
        if workloads {
            self.ingest_workloads().await?;
        }
        if aggregation {
            self.aggregation_1m().await?;
        }
        if queries {
            self.queries().await?;
        }
        if large {
            self.ingest_large().await?;
        }
        if live_state {
            self.live_state().await?;
        }
        if !self.args.instances.is_empty() {
            self.scale_out().await?;
        }
        self.figures.push(Figure::new(
            "ingest",
            "pipeline peak RSS (all runs)",
            self.peak_rss_kib as f64 / 1024.0,
            "MB",
            Some(Target::AtMost(150.0)),
            "VmHWM of each butler-analytics run process",
        ));
        Ok(())
    }

    fn config(&self, db: &str, stream: &str, prefix: &str) -> PipelineConfig {
        PipelineConfig {
            nats_url: self.nats.url.clone(),
            stream: stream.into(),
            prefix: prefix.into(),
            db: self.dir.join(db),
            aggregation: false,
            batch_size: self.args.batch_size,
            postgres_url: self.pg.as_ref().map(|pg| pg.url(&pg_name(db))),
            schedules: None,
        }
    }

    /// On PostgreSQL, an empty database for `db` (a copy of `template` when given).
    async fn fresh_database(&self, db: &str, template: Option<&str>) -> Result<()> {
        if let Some(pg) = &self.pg {
            pg.fresh(&pg_name(db), template).await?;
        }
        Ok(())
    }

    fn migrate(&self, config: &PipelineConfig) -> Result<()> {
        let path = config.write(procs::free_port()?)?;
        procs::timed_command(&path, &["migrate"])?;
        Ok(())
    }

    fn note_rss(&mut self, p: &Pipeline) {
        self.peak_rss_kib = self.peak_rss_kib.max(p.peak_rss_kib());
    }

    fn day_traffic(&self, seed: u64, ids: IdStyle, prefix: &str) -> Arc<Vec<traffic::Generated>> {
        let mut t = Traffic::new(seed, self.args.properties, ids);
        Arc::new(t.spread(self.args.events, self.cal.day_ms, DAY_MS, prefix))
    }

    fn hour_traffic(&self, seed: u64, ids: IdStyle, prefix: &str) -> Arc<Vec<traffic::Generated>> {
        let mut t = Traffic::new(seed, self.args.properties, ids);
        Arc::new(t.spread(
            (self.args.events / 24).max(1),
            self.cal.hour_ms,
            HOUR_MS,
            prefix,
        ))
    }

    /// Two workloads, each consumed by the overlapped loop into the seed's schema alone
    /// (acking every message after its commit, as a shared consumer must) and by the
    /// pipeline, in that order, with the CPU each spends per event.
    async fn ingest_workloads(&mut self) -> Result<()> {
        if self.pg.is_some() {
            println!("workloads: skipped on PostgreSQL (the seed schema's loop is SQLite)");
            return Ok(());
        }
        let n = self.args.events;
        let workloads = [
            (
                "workload: hotel-like",
                Conversations::HotelLike,
                "~40 open conversations per property, 10–60 events each, random ids",
            ),
            (
                "workload: no locality",
                Conversations::Scattered,
                "every event a new conversation with a random id",
            ),
        ];
        for (i, (section, conversations, shape)) in workloads.into_iter().enumerate() {
            let name = section.trim_start_matches("workload: ");
            let what = format!(
                "{n} events over {} UTC, {} properties, {shape}, time-ordered event ids, published while consumed",
                self.cal.day, self.args.properties
            );
            let traffic = |prefix: &str| {
                let mut t = Traffic::new(20 + i as u64, self.args.properties, IdStyle::TimeOrdered)
                    .with_conversations(conversations);
                Arc::new(t.spread(n, self.cal.day_ms, DAY_MS, prefix))
            };
            let cpu = || {
                (
                    procs::cpu_seconds("butler-bench"),
                    procs::cpu_seconds("nats-server"),
                    procs::cpu_seconds("butler-analytic"),
                )
            };
            let per_event_us = |seconds: f64| seconds / n as f64 * 1e6;

            let (stream, prefix) = (format!("BENCH_W{i}_LOOP"), format!("bench.w{i}loop"));
            let db = self.dir.join(format!("w{i}-seed.db"));
            baselines::seed_schema(&db)?;
            ingest::ensure_stream(&self.js, &stream, &prefix).await?;
            let events = traffic(&prefix);
            println!("workloads: {name}, seed-schema loop, {n} events");
            let before = cpu();
            let loop_rate = baselines::overlapped_loop(
                &self.js,
                &stream,
                baselines::LoopDb::Sqlite(&db),
                events,
            )
            .await?;
            let after = cpu();
            let (loop_bench, loop_nats) = (after.0 - before.0, after.1 - before.1);

            let (stream, prefix) = (format!("BENCH_W{i}_PIPE"), format!("bench.w{i}pipe"));
            let cfg = self.config(&format!("w{i}-pipeline.db"), &stream, &prefix);
            let pipeline = Pipeline::start(&cfg)?;
            let events = traffic(&prefix);
            println!("workloads: {name}, pipeline, {n} events");
            let before = cpu();
            let took =
                ingest::timed_ingest(&self.js, &stream, "analytics-pipeline", events).await?;
            let after = cpu();
            self.note_rss(&pipeline);
            let phases = ["events", "live_state", "dirty_hours", "tallies", "commit"].map(|p| {
                let seconds = pipeline.metric_labelled(
                    "butler_analytics_ingest_commit_phase_seconds_total",
                    ("phase", p),
                );
                (p, per_event_us(seconds))
            });
            pipeline.stop()?;
            let rate = n as f64 / took.as_secs_f64();
            let (pipe_bench, pipe_nats, pipe_own) =
                (after.0 - before.0, after.1 - before.1, after.2 - before.2);

            self.figures.push(Figure::new(
                section,
                "baseline: overlapped loop, seed schema, explicit acks",
                loop_rate,
                "events/s",
                None,
                format!("{what}; rusqlite cached statement into the seed's table and 3 indexes only, 1000-row transactions, synchronous=FULL, each message acked after its commit"),
            ));
            self.figures.push(Figure::new(
                section,
                "pipeline",
                rate,
                "events/s",
                None,
                format!("{what}; default config"),
            ));
            self.figures.push(Figure::new(
                section,
                "pipeline ÷ seed-schema loop",
                rate / loop_rate,
                "x",
                Some(Target::AtLeast(0.8)),
                "same events, same run",
            ));
            self.figures.push(Figure::new(
                section,
                "CPU per event: pipeline process",
                per_event_us(pipe_own),
                "µs",
                None,
                "user + system time of butler-analytics during its run",
            ));
            for (phase, us) in phases {
                self.figures.push(Figure::new(
                    section,
                    format!("writer per event: {phase}"),
                    us,
                    "µs",
                    None,
                    "wall time of that phase of the ingest transaction (butler_analytics_ingest_commit_phase_seconds_total) ÷ events",
                ));
            }
            self.figures.push(Figure::new(
                section,
                "CPU per event: the loop",
                per_event_us(loop_bench - pipe_bench),
                "µs",
                None,
                "the benchmark process's time during the loop's run less its time during the pipeline's (publishing and polling, the same in both)",
            ));
            self.figures.push(Figure::new(
                section,
                "CPU per event: nats-server, pipeline / loop",
                per_event_us(pipe_nats) / per_event_us(loop_nats).max(f64::MIN_POSITIVE),
                "x",
                None,
                format!(
                    "{:.1} µs under the pipeline, {:.1} µs under the loop",
                    per_event_us(pipe_nats),
                    per_event_us(loop_nats)
                ),
            ));
        }
        Ok(())
    }

    /// Time-ordered ids into empty tables: the pipeline, the overlapped loop and the
    /// seed's design, each fed the same events while they are published; then the
    /// latency run at a fixed offered rate on the pipeline.
    async fn ingest_empty(&mut self) -> Result<()> {
        let n = self.args.events;
        let what = format!(
            "{n} events over {} UTC, {} properties, time-ordered ids, published while consumed",
            self.cal.day, self.args.properties
        );

        // The overlapped loop.
        let loop_cfg = self.config("b.db", "BENCH_LOOP", "bench.loop");
        self.fresh_database("b.db", None).await?;
        self.migrate(&loop_cfg)?;
        ingest::ensure_stream(&self.js, "BENCH_LOOP", "bench.loop").await?;
        let events = self.day_traffic(1, IdStyle::TimeOrdered, "bench.loop");
        println!("ingest: overlapped loop baseline, {n} events");
        let (loop_db, how) = match &loop_cfg.postgres_url {
            Some(url) => (
                baselines::LoopDb::Postgres(url),
                "PostgreSQL, the pipeline's batch statement for raw events (UNNEST, ON CONFLICT DO NOTHING) and nothing else, 1000-row transactions, synchronous_commit on, ack each after commit",
            ),
            None => (
                baselines::LoopDb::Sqlite(&loop_cfg.db),
                "rusqlite cached statement, 1000-row transactions, synchronous=FULL, ack each after commit",
            ),
        };
        let loop_rate = baselines::overlapped_loop(&self.js, "BENCH_LOOP", loop_db, events).await?;
        self.figures.push(Figure::new(
            "ingest",
            "baseline: overlapped fetch→insert→ack loop, empty table",
            loop_rate,
            "events/s",
            None,
            format!("{what}; {how}"),
        ));

        // The database alone: the same rows inserted by one writer, no NATS.
        let bare_cfg = self.config("f.db", "UNUSED", "unused");
        self.fresh_database("f.db", None).await?;
        self.migrate(&bare_cfg)?;
        let rows: Vec<_> = self
            .day_traffic(1, IdStyle::TimeOrdered, "unused")
            .iter()
            .map(|e| e.row.clone())
            .collect();
        let bare = match &bare_cfg.postgres_url {
            Some(url) => postgres::bare_insert(url, &rows).await?,
            None => {
                let bare_db = bare_cfg.db.clone();
                tokio::task::spawn_blocking(move || baselines::bare_insert(&bare_db, &rows))
                    .await??
            }
        };
        self.figures.push(Figure::new(
            "ingest",
            if self.pg.is_some() {
                "baseline: bare PostgreSQL batch insert, empty table (no NATS)"
            } else {
                "baseline: bare rusqlite insert, empty table (no NATS)"
            },
            bare,
            "rows/s",
            None,
            format!("{what}; 1000-row transactions, durable commits"),
        ));

        // The pipeline.
        self.fresh_database("a.db", None).await?;
        let cfg = self.config("a.db", "BUTLER_EVENTS", "butler.events");
        let pipeline = Pipeline::start(&cfg)?;
        let events = self.day_traffic(1, IdStyle::TimeOrdered, "butler.events");
        println!("ingest: pipeline, {n} events into an empty table");
        let writes_before = pipeline.metric("butler_analytics_live_dashboard_writes_total");
        let took =
            ingest::timed_ingest(&self.js, "BUTLER_EVENTS", "analytics-pipeline", events).await?;
        let rate = n as f64 / took.as_secs_f64();
        self.note_rss(&pipeline);
        // The last commits' dashboards are written at the next push, within
        // dashboard.push_interval_ms (1 s).
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let writes =
            pipeline.metric("butler_analytics_live_dashboard_writes_total") - writes_before;
        self.figures.push(Figure::new(
            "live dashboards",
            "key-value writes per 1,000 events ingested",
            writes * 1000.0 / n as f64,
            "writes",
            None,
            format!(
                "{writes} writes while {n} events of {} properties were ingested at full speed; dashboard.push_interval_ms 1000",
                self.args.properties
            ),
        ));
        self.figures.push(Figure::new(
            "ingest",
            "pipeline, empty table, time-ordered ids",
            rate,
            "events/s",
            Some(Target::AtLeast(80_000.0)),
            format!("{what}; config {}", pipeline.config.display()),
        ));
        self.figures.push(Figure::new(
            "ingest",
            "pipeline ÷ overlapped loop",
            rate / loop_rate,
            "x",
            Some(Target::AtLeast(0.8)),
            "same events, same run",
        ));

        // The seed's design (SQLite: the design it is).
        if self.args.no_seed_node || self.pg.is_some() {
            println!("ingest: seed design baseline skipped");
        } else {
            match self.seed_node().await {
                Ok(seed_rate) => {
                    self.figures.push(Figure::new(
                        "ingest",
                        "baseline: the seed's design (Node.js, better-sqlite3, batches of 100, 5 s timer)",
                        seed_rate,
                        "events/s",
                        None,
                        format!("{what}; bench/seed-node/collector.mjs"),
                    ));
                    self.figures.push(Figure::new(
                        "ingest",
                        "pipeline ÷ seed design",
                        rate / seed_rate,
                        "x",
                        Some(Target::AtLeast(3.0)),
                        "same events, same run",
                    ));
                }
                Err(e) => println!("ingest: seed design baseline not measured: {e:#}"),
            }
        }

        // Latency at a fixed offered rate, events stamped with their publish time.
        let count = self.args.rate * self.args.latency_secs;
        let start = Utc::now().timestamp_millis() + 500;
        let mut t = Traffic::new(2, self.args.properties, IdStyle::TimeOrdered);
        let events: Vec<_> = (0..count)
            .map(|i| t.event(start + (i * 1000 / self.args.rate) as i64, "butler.events"))
            .collect();
        println!(
            "ingest: latency at {} events/s for {} s",
            self.args.rate, self.args.latency_secs
        );
        let lag = |p: &Pipeline| {
            (
                p.metric("butler_analytics_live_dashboard_lag_seconds_sum"),
                p.metric("butler_analytics_live_dashboard_lag_seconds_count"),
            )
        };
        let lag_before = lag(&pipeline);
        let mut lat = ingest::paced_latencies(
            &self.js,
            "BUTLER_EVENTS",
            "analytics-pipeline",
            Arc::new(events),
            self.args.rate,
        )
        .await?;
        self.note_rss(&pipeline);
        let lag_after = lag(&pipeline);
        let lag_writes = lag_after.1 - lag_before.1;
        if lag_writes > 0.0 {
            self.figures.push(Figure::new(
                "live dashboards",
                format!("commit → key written, mean at {}/s", self.args.rate),
                (lag_after.0 - lag_before.0) / lag_writes * 1000.0,
                "ms",
                Some(Target::AtMost(1000.0)),
                format!(
                    "{lag_writes} writes over {} properties; butler_analytics_live_dashboard_lag_seconds; dashboard.push_interval_ms 1000",
                    self.args.properties
                ),
            ));
        }
        let how = format!(
            "{count} events offered at {}/s onto a table of {n} rows; publish → ack floor covers it (polled every 2 ms)",
            self.args.rate
        );
        self.figures.push(Figure::new(
            "ingest",
            format!("publish → committed p50 at {}/s", self.args.rate),
            ingest::quantile_ms(&mut lat, 0.5),
            "ms",
            None,
            how.clone(),
        ));
        self.figures.push(Figure::new(
            "ingest",
            format!("publish → committed p99 at {}/s", self.args.rate),
            ingest::quantile_ms(&mut lat, 0.99),
            "ms",
            Some(Target::AtMost(100.0)),
            how,
        ));
        pipeline.stop()?;
        Ok(())
    }

    async fn seed_node(&mut self) -> Result<f64> {
        let dir = self.args.out.join("seed-node");
        std::fs::create_dir_all(&dir)?;
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/seed-node");
        for f in ["package.json", "collector.mjs"] {
            std::fs::copy(src.join(f), dir.join(f))?;
        }
        if !dir.join("node_modules/better-sqlite3").is_dir() {
            println!("ingest: npm install in {}", dir.display());
            let ok = std::process::Command::new("npm")
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .context("cannot run npm")?
                .success();
            anyhow::ensure!(ok, "npm install failed");
        }
        let cfg = self.config("c.db", "BENCH_SEED", "bench.seed");
        self.migrate(&cfg)?;
        ingest::ensure_stream(&self.js, "BENCH_SEED", "bench.seed").await?;
        let events = self.day_traffic(1, IdStyle::TimeOrdered, "bench.seed");
        println!("ingest: seed design baseline, {} events", events.len());
        baselines::seed_node(
            &dir,
            &self.nats.url,
            &self.js,
            "BENCH_SEED",
            &cfg.db,
            events,
        )
        .await
    }

    /// Publishes one more hour of traffic through the pipeline on `db`, then times
    /// the hourly run that follows it.
    async fn hourly_run(
        &mut self,
        cfg: &PipelineConfig,
        seed: u64,
        ids: IdStyle,
    ) -> Result<procs::JobRun> {
        let config = cfg.write(procs::free_port()?)?;
        procs::timed_command(
            &config,
            &["aggregate", "--job", "hourly_message_counts", "--due"],
        )?;
        let pipeline = Pipeline::start(cfg)?;
        let events = self.hour_traffic(seed, ids, &cfg.prefix);
        ingest::timed_ingest(&self.js, &cfg.stream, "analytics-pipeline", events).await?;
        self.note_rss(&pipeline);
        pipeline.stop()?;
        let run = procs::aggregate(
            &config,
            &["aggregate", "--job", "hourly_message_counts", "--due"],
        )?;
        anyhow::ensure!(
            run.periods > 0,
            "the hourly run found nothing to do: {}",
            run.line
        );
        Ok(run)
    }

    /// The daily jobs over the day of the empty-table run, and an hourly run.
    async fn aggregation_1m(&mut self) -> Result<()> {
        let cfg = self.config("a.db", "BUTLER_EVENTS", "butler.events");
        let config = cfg.write(procs::free_port()?)?;
        let (from, to) = (self.cal.date(0), self.cal.date(1));
        let mut all_daily_ms = 0.0;
        for job in [
            "daily_conversation_metrics",
            "daily_staff_performance",
            "daily_intent_distribution",
            "daily_channel_delivery",
            "daily_task_performance",
            "daily_staff_presence",
        ] {
            println!("aggregation: {job} over {from}");
            let run = procs::aggregate(
                &config,
                &["aggregate", "--job", job, "--from", &from, "--to", &to],
            )?;
            all_daily_ms += run.job_ms;
            self.figures.push(Figure::new(
                "aggregation",
                format!("daily run {job}, {} events that day", self.args.events),
                run.job_ms / 1000.0,
                "s",
                None,
                format!(
                    "butler-analytics -c {} aggregate --job {job} --from {from} --to {to} → {} ({:.2} s with process start)",
                    config.display(),
                    run.line,
                    run.wall.as_secs_f64()
                ),
            ));
        }
        self.figures.push(Figure::new(
            "aggregation",
            format!(
                "daily runs, every daily job in all, {} events that day",
                self.args.events
            ),
            all_daily_ms / 1000.0,
            "s",
            Some(Target::AtMost(5.0)),
            "the sum of the six daily runs above".to_owned(),
        ));
        println!(
            "aggregation: hourly run beside {} raw rows",
            self.args.events
        );
        let run = self.hourly_run(&cfg, 3, IdStyle::TimeOrdered).await?;
        self.hourly_small = Some(run.job_ms);
        self.figures.push(Figure::new(
            "aggregation",
            format!(
                "hourly run, {} new events, raw table ~{} rows",
                self.args.events / 24,
                self.args.events
            ),
            run.job_ms,
            "ms",
            Some(Target::AtMost(200.0)),
            format!(
                "butler-analytics -c {} aggregate --job hourly_message_counts --due → {} ({:.0} ms with process start)",
                config.display(),
                run.line,
                run.wall.as_secs_f64() * 1000.0
            ),
        ));
        Ok(())
    }

    /// Random UUIDv4 ids into a raw table already holding `prefill` rows: the pipeline
    /// against a bare insert of the same rows into a copy of the same file; then an
    /// hourly run beside the large table and a 30-day backfill.
    async fn ingest_large(&mut self) -> Result<()> {
        let template = self.prefill_template().await?;
        let (pipeline_db, bare_db) = (self.dir.join("d.db"), self.dir.join("e.db"));
        println!("ingest: copying the {}-row table twice", self.args.prefill);
        match &self.pg {
            Some(_) => {
                let template = pg_name(
                    &template
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                self.fresh_database("d.db", Some(&template)).await?;
                self.fresh_database("e.db", Some(&template)).await?;
            }
            None => {
                std::fs::copy(&template, &pipeline_db)?;
                std::fs::copy(&template, &bare_db)?;
            }
        }
        let cfg = self.config("d.db", "BENCH_LARGE", "bench.large");
        let bare_url = self.config("e.db", "UNUSED", "unused").postgres_url;
        let n = self.args.events;
        let what = format!(
            "{n} events over {} UTC, random UUIDv4 ids, into a table of {} rows",
            self.cal.day, self.args.prefill
        );
        let events = self.day_traffic(4, IdStyle::Uuid4, "bench.large");
        println!(
            "ingest: bare insert of {n} rows beside {} rows",
            self.args.prefill
        );
        let rows: Vec<_> = events.iter().map(|e| e.row.clone()).collect();
        let bare = match &bare_url {
            Some(url) => postgres::bare_insert(url, &rows).await?,
            None => {
                tokio::task::spawn_blocking(move || baselines::bare_insert(&bare_db, &rows))
                    .await??
            }
        };
        self.figures.push(Figure::new(
            "ingest",
            if self.pg.is_some() {
                "baseline: bare PostgreSQL batch insert, UUIDv4 ids, large table"
            } else {
                "baseline: bare rusqlite insert, UUIDv4 ids, large table"
            },
            bare,
            "rows/s",
            None,
            format!("{what}; cached statement, 1000-row transactions, WAL, synchronous=FULL"),
        ));
        let pipeline = Pipeline::start(&cfg)?;
        println!(
            "ingest: pipeline, {n} events beside {} rows",
            self.args.prefill
        );
        let took =
            ingest::timed_ingest(&self.js, "BENCH_LARGE", "analytics-pipeline", events).await?;
        self.note_rss(&pipeline);
        let rate = n as f64 / took.as_secs_f64();
        self.figures.push(Figure::new(
            "ingest",
            "pipeline, UUIDv4 ids, large table",
            rate,
            "events/s",
            None,
            format!("{what}; config {}", pipeline.config.display()),
        ));
        self.figures.push(Figure::new(
            "ingest",
            "pipeline ÷ bare insert, UUIDv4 ids, large table",
            rate / bare,
            "x",
            Some(Target::AtLeast(0.9)),
            "same rows, copies of the same file, same run",
        ));
        pipeline.stop()?;

        println!(
            "aggregation: hourly run beside {} raw rows",
            self.args.prefill + n
        );
        let run = self.hourly_run(&cfg, 5, IdStyle::Uuid4).await?;
        let config = cfg.write(procs::free_port()?)?;
        self.figures.push(Figure::new(
            "aggregation",
            format!(
                "hourly run, {} new events, raw table ~{} rows",
                n / 24,
                self.args.prefill + n
            ),
            run.job_ms,
            "ms",
            Some(Target::AtMost(200.0)),
            format!(
                "butler-analytics -c {} aggregate --job hourly_message_counts --due → {} ({:.0} ms with process start)",
                config.display(),
                run.line,
                run.wall.as_secs_f64() * 1000.0
            ),
        ));
        // The ratio needs the small-table run of the `aggregation` part in this run.
        if let Some(small_ms) = self.hourly_small {
            self.figures.push(Figure::new(
                "aggregation",
                "hourly run, large table ÷ small table",
                run.job_ms / small_ms.max(1e-9),
                "x",
                Some(Target::AtMost(1.5)),
                "the two hourly runs above",
            ));
        }
        let (from, to) = (self.cal.date(-30), self.cal.date(0));
        println!("aggregation: 30-day backfill {from}..{to}");
        let run = procs::aggregate(
            &config,
            &["aggregate", "--job", "all", "--from", &from, "--to", &to],
        )?;
        let took = run.wall;
        self.figures.push(Figure::new(
            "aggregation",
            format!("30-day backfill, every job, {} events", self.args.prefill),
            took.as_secs_f64(),
            "s",
            None,
            format!(
                "butler-analytics -c {} aggregate --job all --from {from} --to {to}",
                config.display()
            ),
        ));
        Ok(())
    }

    /// The prefilled table, made once per size and kept under `--out` (on PostgreSQL,
    /// as a database of the same name) for later runs.
    async fn prefill_template(&self) -> Result<PathBuf> {
        let path = self
            .args
            .out
            .join(format!("prefill-{}.db", self.args.prefill));
        let name = format!("prefill-{}.db", self.args.prefill);
        let cfg = PipelineConfig {
            db: path.clone(),
            postgres_url: self.pg.as_ref().map(|pg| pg.url(&pg_name(&name))),
            ..self.config("unused.db", "UNUSED", "unused")
        };
        let config = cfg.write(procs::free_port()?)?;
        let made = match &self.pg {
            Some(pg) => pg.exists(&pg_name(&name)).await?,
            None => path.is_file(),
        };
        if !made {
            println!(
                "ingest: making the {}-row table once ({}), UUIDv4 ids over the 30 days before {}",
                self.args.prefill,
                path.display(),
                self.cal.day
            );
            let partial = path.with_extension("partial.db");
            let _ = std::fs::remove_file(&partial);
            let partial_name = format!("prefill-{}.partial.db", self.args.prefill);
            self.fresh_database(&partial_name, None).await?;
            let partial_cfg = PipelineConfig {
                db: partial.clone(),
                postgres_url: self.pg.as_ref().map(|pg| pg.url(&pg_name(&partial_name))),
                ..cfg.clone()
            };
            self.migrate(&partial_cfg)?;
            let mut t = Traffic::new(6, self.args.properties, IdStyle::Uuid4);
            let (start, span, n) = (
                self.cal.day_ms - 30 * DAY_MS,
                30 * DAY_MS,
                self.args.prefill,
            );
            let rows = (0..n).map(move |i| {
                let at = start + (i128::from(i) * i128::from(span) / i128::from(n)) as i64;
                t.event(at, "unused").row
            });
            match (&self.pg, &partial_cfg.postgres_url) {
                (Some(pg), Some(url)) => {
                    postgres::prefill(url, rows).await?;
                    pg.rename(&pg_name(&partial_name), &pg_name(&name)).await?;
                }
                _ => {
                    baselines::prefill(&partial, rows)?;
                    std::fs::rename(&partial, &path)?;
                }
            }
        }
        // A table made by an older schema is brought up to date once.
        procs::timed_command(&config, &["migrate"])?;
        Ok(path)
    }

    /// The query service under 16 concurrent requesters, on the empty-table run's
    /// database (a day of events three days ago, the latency run's events today).
    async fn queries(&mut self) -> Result<()> {
        let cfg = self.config("a.db", "BUTLER_EVENTS", "butler.events");
        let year = self.year_of_daily_rows(&cfg).await?;
        let pipeline = Pipeline::start(&cfg)?;
        let c = self.args.concurrency;
        let total = self.args.requests;
        let prop = traffic::property_id(0);
        let props = self.args.properties;
        let month_start = self.cal.day.with_day(1).unwrap_or(self.cal.day);
        let month_end = month_start + chrono::Months::new(1);
        let kinds: Vec<(&str, &'static str, queries::Body, f64)> = vec![
            (
                "dashboard, cached",
                "analytics.query.dashboard",
                Arc::new({
                    let prop = prop.clone();
                    move |_| serde_json::json!({ "propertyId": prop }).to_string()
                }),
                1.0,
            ),
            (
                "dashboard, uncached",
                "analytics.query.dashboard",
                Arc::new({
                    let now = Utc::now();
                    move |i| {
                        let at = now - chrono::Duration::milliseconds(i as i64 + 1);
                        serde_json::json!({
                            "propertyId": traffic::property_id(i as u64 % props),
                            "asOf": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        })
                        .to_string()
                    }
                }),
                20.0,
            ),
            (
                "time series, a year of daily rows",
                "analytics.query.timeseries",
                Arc::new({
                    let (prop, from, to) = (prop.clone(), year.0.clone(), year.1.clone());
                    move |_| {
                        serde_json::json!({
                            "metric": "conversation_metrics.conversations_started",
                            "granularity": "day",
                            "startDate": from,
                            "endDate": to,
                            "propertyId": prop,
                        })
                        .to_string()
                    }
                }),
                10.0,
            ),
            (
                "monthly report, every section",
                "analytics.query.report",
                Arc::new({
                    let prop = prop.clone();
                    move |_| {
                        serde_json::json!({
                            "type": "monthly",
                            "propertyId": prop,
                            "dateRange": { "start": month_start.to_string(), "end": month_end.to_string() },
                            "format": "json",
                        })
                        .to_string()
                    }
                }),
                500.0,
            ),
        ];
        for (name, subject, body, target) in kinds {
            println!("queries: {name}, {total} requests from {c} requesters");
            // Warm up: the cache, the statement caches, the page cache.
            queries::concurrent(&self.client, subject, c, c, body.clone()).await?;
            let mut lat = queries::concurrent(&self.client, subject, total, c, body).await?;
            let how = format!(
                "{total} requests, {c} concurrent requesters, {} events that day over {props} properties; config {}",
                self.args.events,
                pipeline.config.display()
            );
            self.figures.push(Figure::new(
                "queries",
                format!("{name} p50"),
                ingest::quantile_ms(&mut lat, 0.5),
                "ms",
                None,
                how.clone(),
            ));
            self.figures.push(Figure::new(
                "queries",
                format!("{name} p99"),
                ingest::quantile_ms(&mut lat, 0.99),
                "ms",
                Some(Target::AtMost(target)),
                how,
            ));
        }
        self.note_rss(&pipeline);
        pipeline.stop()?;
        Ok(())
    }

    /// Ingest and uncached-dashboard throughput with k instances on one PostgreSQL
    /// database and one durable consumer, for each k of `--instances`, with the CPU
    /// the pipelines and the server spent.
    async fn scale_out(&mut self) -> Result<()> {
        anyhow::ensure!(
            self.pg.is_some(),
            "--instances needs --backend postgres: instances share a PostgreSQL database"
        );
        let n = self.args.events;
        let c = self.args.concurrency;
        let total = self.args.requests;
        let props = self.args.properties;
        let mut single: Option<(f64, f64)> = None;
        for k in self.args.instances.clone() {
            let stream = format!("BENCH_SCALE_{k}");
            let prefix = format!("bench.scale{k}");
            ingest::ensure_stream(&self.js, &stream, &prefix).await?;
            self.fresh_database("g.db", None).await?;
            let base = self.config("g.db", &stream, &prefix);
            self.migrate(&base)?;
            let mut pipelines = Vec::with_capacity(k);
            for i in 0..k {
                let mut cfg = base.clone();
                cfg.db = self.dir.join(format!("g{k}-{i}.db"));
                pipelines.push(Pipeline::start(&cfg)?);
            }
            let events = self.day_traffic(1, IdStyle::TimeOrdered, &prefix);
            println!("scale-out: {k} instance(s), {n} events");
            let cpu_now = || {
                [
                    procs::cpu_seconds("butler-analytic"),
                    procs::cpu_seconds("postgres"),
                    procs::cpu_seconds("nats-server"),
                    procs::cpu_seconds("butler-bench"),
                ]
            };
            let cpu_before = cpu_now();
            let took =
                ingest::timed_ingest(&self.js, &stream, "analytics-pipeline", events).await?;
            let cpu_after = cpu_now();
            let cpu: Vec<f64> = cpu_after
                .iter()
                .zip(cpu_before)
                .map(|(a, b)| a - b)
                .collect();
            let rate = n as f64 / took.as_secs_f64();

            println!("scale-out: {k} instance(s), {total} uncached dashboards from {c} requesters");
            let now = Utc::now();
            let body: queries::Body = Arc::new(move |i| {
                let at = now - chrono::Duration::milliseconds(i as i64 + 1);
                serde_json::json!({
                    "propertyId": traffic::property_id(i as u64 % props),
                    "asOf": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })
                .to_string()
            });
            queries::concurrent(
                &self.client,
                "analytics.query.dashboard",
                c,
                c,
                body.clone(),
            )
            .await?;
            let started = std::time::Instant::now();
            let mut lat =
                queries::concurrent(&self.client, "analytics.query.dashboard", total, c, body)
                    .await?;
            let qps = total as f64 / started.elapsed().as_secs_f64();
            for p in &pipelines {
                self.note_rss(p);
            }
            for p in pipelines {
                p.stop()?;
            }
            let (one_rate, one_qps) = *single.get_or_insert((rate, qps));
            let how = format!(
                "{k} butler-analytics run processes on one PostgreSQL database and durable consumer; \
                 {n} events; CPU during ingest: pipelines {:.1} s, PostgreSQL {:.1} s, \
                 nats-server {:.1} s, the harness {:.1} s, over {:.1} s of wall time",
                cpu[0],
                cpu[1],
                cpu[2],
                cpu[3],
                took.as_secs_f64()
            );
            self.figures.push(Figure::new(
                "scale-out",
                format!("ingest, {k} instance(s)"),
                rate,
                "events/s",
                None,
                how.clone(),
            ));
            self.figures.push(Figure::new(
                "scale-out",
                format!("ingest, {k} instance(s) ÷ 1"),
                rate / one_rate,
                "x",
                None,
                how.clone(),
            ));
            self.figures.push(Figure::new(
                "scale-out",
                format!("uncached dashboards, {k} instance(s)"),
                qps,
                "requests/s",
                None,
                format!("{total} requests, {c} concurrent requesters"),
            ));
            self.figures.push(Figure::new(
                "scale-out",
                format!("uncached dashboards, {k} instance(s) ÷ 1"),
                qps / one_qps,
                "x",
                None,
                String::new(),
            ));
            self.figures.push(Figure::new(
                "scale-out",
                format!("uncached dashboard p99, {k} instance(s)"),
                ingest::quantile_ms(&mut lat, 0.99),
                "ms",
                None,
                String::new(),
            ));
        }
        Ok(())
    }

    /// A year of daily conversation rows for the time-series query, written straight
    /// into the daily table before the aggregated day (which the jobs wrote).
    async fn year_of_daily_rows(&self, cfg: &PipelineConfig) -> Result<(String, String)> {
        let from = self.cal.date(-365);
        let to = self.cal.date(1);
        let property = traffic::property_id(0);
        match &cfg.postgres_url {
            Some(url) => postgres::daily_rows(url, &property, &from, &self.cal.date(0)).await?,
            None => baselines::daily_rows(&cfg.db, &property, &from, &self.cal.date(0))?,
        }
        Ok((from, to))
    }
}
