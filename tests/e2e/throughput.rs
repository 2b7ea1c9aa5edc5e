//! A plain ingest run, for the figure an operator asks first: events per second from
//! a full stream into an empty database. Opt-in (`cargo test -p butler-tests --test
//! e2e -- --ignored --nocapture`); the benchmark harness measures more.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use crate::helpers::{App, NatsServer, consumer_info, message_event, publish_all, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run on demand"]
async fn plain_ingest_rate() {
    let n: usize = std::env::var("INGEST_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let messages = (0..n)
        .map(|i| {
            (
                "butler.events.message.received".to_owned(),
                message_event(&format!("t-{i:09}")),
            )
        })
        .collect();
    publish_all(&js, messages).await;
    let started = Instant::now();
    let app = App::start(&nats.url(), "");
    wait_until(Duration::from_secs(600), "every event stored", || async {
        consumer_info(&js).await.ack_floor.stream_sequence >= n as u64
    })
    .await;
    let elapsed = started.elapsed();
    assert_eq!(app.event_count().await, n as i64);
    println!(
        "ingest: {n} events in {:.2} s = {:.0} events/s (start-up included)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

/// Query latencies on a prepared database (`QUERY_BENCH_DB`, e.g. one made with
/// `scripts/synthetic-events.py` and aggregated), sequential requests, p50 and p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run on demand"]
async fn query_latencies() {
    let db = std::env::var("QUERY_BENCH_DB").expect("QUERY_BENCH_DB: a prepared database file");
    let property = std::env::var("QUERY_BENCH_PROPERTY").unwrap_or_else(|_| "prop_0000".into());
    let day = std::env::var("QUERY_BENCH_DAY").unwrap_or_else(|_| "2026-11-24".into());
    let n: usize = std::env::var("QUERY_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let nats = NatsServer::start();
    let _app = App::start_on(
        &nats.url(),
        "retention:\n  raw_events: 36500\nservice:\n  aggregator: false\ningest:\n  enabled: false\n",
        Some(std::path::Path::new(&db)),
    );
    let client = async_nats::connect(nats.url()).await.unwrap();
    let next_day = (chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").unwrap()
        + chrono::Days::new(1))
    .to_string();
    let month_start = format!("{}-01", &day[..7]);
    type Body<'a> = Box<dyn Fn(usize) -> serde_json::Value + 'a>;
    let cases: Vec<(&str, &str, Body)> = vec![
        (
            "dashboard, cached",
            "analytics.query.dashboard",
            Box::new(|_| json!({"propertyId": property})),
        ),
        (
            "dashboard, uncached",
            "analytics.query.dashboard",
            Box::new(
                |i| json!({"propertyId": property, "asOf": (chrono::Utc::now() - chrono::Duration::milliseconds(i as i64 + 1)).to_rfc3339()}),
            ),
        ),
        (
            "time series, hourly messages by channel over the day",
            "analytics.query.timeseries",
            Box::new(
                |_| json!({"metric": "message_counts.count", "granularity": "hour", "startDate": day, "endDate": next_day, "propertyId": property, "dimensions": ["channel"]}),
            ),
        ),
        (
            "time series, a year of daily conversations",
            "analytics.query.timeseries",
            Box::new(
                |_| json!({"metric": "conversation_metrics.conversations_started", "granularity": "day", "startDate": "2026-01-01", "endDate": "2027-01-01", "propertyId": property}),
            ),
        ),
        (
            "daily report (json)",
            "analytics.query.report",
            Box::new(
                |_| json!({"type": "daily", "propertyId": property, "dateRange": {"start": day, "end": next_day}}),
            ),
        ),
        (
            "monthly report (json)",
            "analytics.query.report",
            Box::new(
                |_| json!({"type": "monthly", "propertyId": property, "dateRange": {"start": month_start, "end": next_day}}),
            ),
        ),
    ];
    for (name, subject, body) in &cases {
        let rounds = if subject.ends_with("report") {
            n.min(20)
        } else {
            n
        };
        let mut times = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let payload = Bytes::from(body(i).to_string());
            let started = Instant::now();
            let reply = client.request(subject.to_string(), payload).await.unwrap();
            times.push(started.elapsed());
            assert!(
                reply
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Service-Error-Code"))
                    .is_none(),
                "{name}: {:?}",
                reply
            );
        }
        times.sort();
        let pick = |p: usize| times[((p * times.len()).div_ceil(100)).max(1) - 1];
        println!(
            "{name:<55} n={rounds:<4} p50 {:>9.2?}  p99 {:>9.2?}",
            pick(50),
            pick(99)
        );
    }
}
