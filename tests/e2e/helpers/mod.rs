//! Test harness: a nats-server child, the pipeline as a child process, and typed
//! helpers over both.

mod app;
mod browser;
mod db;
mod nats;
mod postgres;
mod requests;

pub use app::{App, CommitBlocker, cli, pipeline_bin};
pub use browser::Browser;
pub use db::{Backend, TestDb, backend};
pub use nats::{
    NatsCluster, NatsServer, consumer_info, publish_all, read_object, try_consumer_info,
};
pub use postgres::PgServer;
pub use requests::{error_code, header, request};

use std::future::Future;
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` every 25 ms until it returns true or `timeout` passes; panics with
/// `what` on timeout.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How far the stored samples' timestamps are moved: whole days, so that the latest
/// (of 2026-11-24) is at most a day old.
pub fn sample_shift() -> chrono::Duration {
    let written = chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
    (chrono::Utc::now().date_naive() - written).max(chrono::Duration::zero())
}

/// The sample messages shared with the design: `(subject, payload bytes, expect)`.
/// Dates are moved to stay what they are for: the stored samples (of 2026-11-24) by
/// whole days ([`sample_shift`]) so that they stay within the default retention, the
/// future one to a month from now (well past the default skew of a day).
pub fn samples() -> Vec<(String, Vec<u8>, String)> {
    let shift = sample_shift();
    include_str!("../../fixtures/sample-events.jsonl")
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let expect = v["expect"].as_str().unwrap().to_owned();
            // The stored samples keep their time of day and offset as written (some
            // are there to show how odd forms are read): only the date moves.
            let moved = match (expect.as_str(), v["payload"]["timestamp"].as_str()) {
                ("timestamp_in_future", Some(_)) => Some(
                    (chrono::Utc::now() + chrono::Duration::days(30))
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
                ("stored", Some(t)) => t
                    .get(..10)
                    .and_then(|d| d.parse::<chrono::NaiveDate>().ok())
                    .map(|d| format!("{}{}", d + shift, &t[10..])),
                _ => None,
            };
            if let Some(t) = moved {
                v["payload"]["timestamp"] = serde_json::json!(t);
            }
            let payload = match &v["payload"] {
                serde_json::Value::String(s) if s.starts_with("<any payload over") => {
                    vec![b'x'; 65_537]
                }
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                other => serde_json::to_vec(other).unwrap(),
            };
            (
                v["subject"].as_str().unwrap().to_owned(),
                payload,
                v["expect"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `n` message events with ids `<prefix>-000000`…, received and sent in turn,
/// timestamped now: `(subject, payload)`.
pub fn message_events(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let subject = if i % 2 == 0 {
                "butler.events.message.received"
            } else {
                "butler.events.message.sent"
            };
            (
                subject.to_owned(),
                message_event(&format!("{prefix}-{i:06}")),
            )
        })
        .collect()
}

/// A message-received event with an explicit id, timestamped now.
pub fn message_event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "propertyId": "prop_test",
        "channel": "sms",
        "conversationId": format!("conv_{}", id.len()),
    }))
    .unwrap()
}

/// A fixed-offset zone in which it is about noon now (`Etc/GMT±N`, whose sign is
/// POSIX's: `Etc/GMT-5` is UTC+5): a test that counts "today" there is hours away from
/// a local midnight, whenever it runs.
pub fn midday_zone() -> String {
    let utc_hour = i32::try_from(chrono::Timelike::hour(&chrono::Utc::now())).unwrap_or(0);
    // Local hour = UTC hour + offset, offset in [-11, 12].
    let offset = 12 - utc_hour;
    if offset == 0 {
        "Etc/GMT".to_owned()
    } else {
        format!("Etc/GMT{:+}", -offset)
    }
}
