//! A plain ingest run, for the figure an operator asks first: events per second from
//! a full stream into an empty database. Opt-in (`cargo test -p butler-tests --test
//! e2e -- --ignored --nocapture`); the benchmark harness measures more.

use std::time::{Duration, Instant};

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
