//! Job leases on real processes: a killed holder holds its job up for a moment at
//! most, a live holder keeps its job however long the run, and `aggregate --wait`
//! says who holds a job and gives up with exit code 3.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::Value;

use crate::helpers::{App, NatsServer, TestDb, cli, publish_all, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// Message events over `hours` hours of 50 properties, one per property and hour: as
/// many buckets for the hourly job to recompute.
fn spread(hours: i64) -> Vec<(String, Vec<u8>)> {
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    (0..hours * 50)
        .map(|i| {
            let at = start + chrono::Duration::hours(i / 50) + chrono::Duration::seconds(i % 3600);
            let body = serde_json::json!({
                "id": format!("lease-{i:07}"),
                "propertyId": format!("p{:02}", i % 50),
                "channel": "sms",
                "timestamp": at.to_rfc3339(),
            });
            (
                "butler.events.message.received".to_owned(),
                serde_json::to_vec(&body).unwrap(),
            )
        })
        .collect()
}

/// Days of events a test prepares: PostgreSQL recomputes a bucket several times
/// slower than SQLite, so it gets fewer, still enough for a run to outlast three
/// lease periods and for a kill to land inside it.
fn days(on_sqlite: u64) -> i64 {
    let days = match crate::helpers::backend() {
        crate::helpers::Backend::Postgres => on_sqlite / 4,
        crate::helpers::Backend::Sqlite => on_sqlite,
    };
    days as i64
}

const CONFIG: &str = "retention:\n  raw_events: 36500\nstorage:\n  busy_timeout_ms: 30000\n";

/// A pipeline whose database holds `hours` hours of events not yet aggregated, stopped.
async fn prepared(nats: &NatsServer, hours: i64, lease_ms: u64) -> App {
    let mut app = App::start(
        &nats.url(),
        &format!("{CONFIG}service:\n  aggregator: false\n"),
    );
    let js = nats.jetstream().await;
    let events = spread(hours);
    let n = events.len() as i64;
    publish_all(&js, events).await;
    wait_until(WAIT, "every event stored", || async {
        app.event_count().await == n
    })
    .await;
    assert!(app.terminate().success());
    let config = std::fs::read_to_string(app.config_path())
        .unwrap()
        .replace("aggregator: false", "aggregator: true")
        + &format!("aggregation:\n  lease_ms: {lease_ms}\n");
    std::fs::write(app.config_path(), config).unwrap();
    app
}

async fn hourly_lease(db: &TestDb) -> Option<String> {
    db.strings("SELECT holder FROM agg_job_leases WHERE job = 'aggregate:hourly_message_counts'")
        .await
        .into_iter()
        .next()
}

/// The hourly job's runs, as (started, finished, error).
async fn runs(db: &TestDb) -> Vec<(String, String, Value)> {
    db.rows(
        "SELECT started_at, finished_at, error FROM agg_job_runs \
         WHERE job = 'hourly_message_counts' ORDER BY started_at",
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].as_str().unwrap().to_owned(),
            r[1].as_str().unwrap().to_owned(),
            r[2].clone(),
        )
    })
    .collect()
}

fn hourly_table_sql() -> &'static str {
    "SELECT period_start, property_id, channel, direction, count FROM agg_message_counts_hourly"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_holds_its_job_up_for_a_moment_and_the_job_completes() {
    let nats = NatsServer::start();
    // A lease of ten minutes: a command that waits one at most for the job can only
    // have run it by taking the lease over.
    let days = days(60);
    let mut app = prepared(&nats, 24 * days, 600_000).await;
    app.restart();
    let db = app.db().await;
    wait_until(WAIT, "the start-up run to hold the hourly job", || async {
        hourly_lease(&db).await.is_some()
    })
    .await;
    app.kill9();
    let left = hourly_lease(&db)
        .await
        .expect("the killed run's lease stays");
    assert!(runs(&db).await.is_empty(), "killed before the run ended");

    // By hand, beside nobody: the dead holder of this host is taken over at once.
    let out = cli(
        &app.config_path(),
        &[
            "aggregate",
            "--job",
            "hourly_message_counts",
            "--due",
            "--wait",
            "60",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(hourly_lease(&db).await.is_none(), "given back");
    let done = runs(&db).await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(done[0].2.is_null(), "{done:?}");
    assert_ne!(left, "", "the dead holder was named");

    // The tables equal an undisturbed recompute of the same events.
    let table = db.rows(hourly_table_sql()).await;
    assert_eq!(table.len() as i64, 24 * days * 50);
    let out = cli(
        &app.config_path(),
        &[
            "aggregate",
            "--job",
            "hourly_message_counts",
            "--from",
            "2026-05-31",
            "--to",
            "2026-08-01",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut again = db.rows(hourly_table_sql()).await;
    let mut before = table;
    let key = |r: &Vec<Value>| serde_json::to_string(r).unwrap();
    before.sort_by_key(key);
    again.sort_by_key(key);
    assert_eq!(before, again);

    // A restarted pipeline finds nothing held up either.
    app.restart();
    wait_until(
        Duration::from_secs(90),
        "the restarted pipeline's runs",
        || async {
            db.count(
                "SELECT count(*) FROM agg_job_runs WHERE trigger = 'startup' AND error IS NULL",
            )
            .await
                >= 10
        },
    )
    .await;
    db.close().await;
}

/// The lease of the long-run test: its run lasts many of them.
const LEASE_MS: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_three_lease_periods_keeps_its_job() {
    let nats = NatsServer::start();
    let mut app = prepared(&nats, 24 * days(100), LEASE_MS).await;
    app.restart();
    let db = app.db().await;
    wait_until(WAIT, "the start-up run to hold the hourly job", || async {
        hourly_lease(&db).await.is_some()
    })
    .await;
    // Beside a live holder: the command says who holds the job and gives up.
    let started = Instant::now();
    let out = cli(
        &app.config_path(),
        &[
            "aggregate",
            "--job",
            "hourly_message_counts",
            "--due",
            "--wait",
            "5",
        ],
        &[],
    );
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("is held by") && err.contains(':'), "{err}");
    assert!(err.contains("gave up after waiting 5 s"), "{err}");
    assert!(took >= Duration::from_secs(5), "{took:?}");
    wait_until(WAIT, "the start-up run to end", || async {
        !runs(&db).await.is_empty()
    })
    .await;
    let done = runs(&db).await;
    assert_eq!(done.len(), 1, "one run, never two at once: {done:?}");
    assert!(done[0].2.is_null(), "{done:?}");
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };
    let length = ms(&done[0].1) - ms(&done[0].0);
    println!("the start-up hourly run lasted {length} ms");
    assert!(
        length >= 3 * LEASE_MS as i64,
        "the run lasted {length} ms: three lease periods at least"
    );
    // The run is recorded, then its lease given back.
    wait_until(WAIT, "the hourly lease given back", || async {
        hourly_lease(&db).await.is_none()
    })
    .await;
    wait_until(
        WAIT,
        "every start-up run to give its lease back",
        || async { app.metric("butler_analytics_aggregation_leases_held") == 0.0 },
    )
    .await;
    db.close().await;
}
