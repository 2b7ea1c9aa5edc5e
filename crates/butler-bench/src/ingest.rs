//! Publishing traffic and watching a durable consumer's ack floor: a message is
//! counted as ingested when the server has its ack, which every consumer measured
//! here sends only after the commit that holds it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::{self, stream::Config as StreamConfig};

use crate::traffic::Generated;

/// Creates (or finds) a file-backed stream over `<prefix>.>`.
pub async fn ensure_stream(js: &jetstream::Context, name: &str, prefix: &str) -> Result<()> {
    js.get_or_create_stream(StreamConfig {
        name: name.to_owned(),
        subjects: vec![format!("{prefix}.>")],
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create stream {name}"))?;
    Ok(())
}

/// The stream's last sequence now: messages published after it are numbered from it.
pub async fn last_sequence(js: &jetstream::Context, stream: &str) -> Result<u64> {
    let mut s = js.get_stream(stream).await?;
    Ok(s.info().await?.state.last_sequence)
}

/// The ack floor of a durable consumer (0 while it does not exist).
pub async fn ack_floor(js: &jetstream::Context, stream: &str, consumer: &str) -> Result<u64> {
    let s = js.get_stream(stream).await?;
    match s
        .get_consumer::<jetstream::consumer::pull::Config>(consumer)
        .await
    {
        Ok(mut c) => Ok(c.info().await?.ack_floor.stream_sequence),
        Err(_) => Ok(0),
    }
}

/// Publishes every event as fast as the server acks them, 1,000 acks in flight.
pub async fn publish_all(js: jetstream::Context, events: Arc<Vec<Generated>>) -> Result<()> {
    publish_each(
        &js,
        events
            .iter()
            .map(|e| (e.subject.clone(), e.payload.clone())),
    )
    .await
}

/// Publishes each (subject, payload) as fast as the server acks them, 1,000 acks in
/// flight.
pub async fn publish_each(
    js: &jetstream::Context,
    messages: impl Iterator<Item = (String, bytes::Bytes)>,
) -> Result<()> {
    let mut pending = VecDeque::with_capacity(1024);
    for (subject, payload) in messages {
        pending.push_back(js.publish(subject, payload).await?);
        if pending.len() >= 1000
            && let Some(ack) = pending.pop_front()
        {
            ack.await?;
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

/// Publishes while `consumer` ingests; returns the time from the first publish until
/// the ack floor covers every event.
pub async fn timed_ingest(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    events: Arc<Vec<Generated>>,
) -> Result<Duration> {
    let target = last_sequence(js, stream).await? + events.len() as u64;
    let started = Instant::now();
    let publisher = tokio::spawn(publish_all(js.clone(), events));
    let deadline = started + Duration::from_secs(3600);
    loop {
        if ack_floor(js, stream, consumer).await? >= target {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "ingest did not finish in an hour"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    publisher.await??;
    Ok(took)
}

/// Publishes at `rate` events/s and returns each event's latency from its publish to
/// the moment the ack floor was seen to cover it (polled every 2 ms).
pub async fn paced_latencies(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    events: Arc<Vec<Generated>>,
    rate: u64,
) -> Result<Vec<Duration>> {
    let base = last_sequence(js, stream).await?;
    let n = events.len();
    let started = Instant::now();
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            let mut sent = Vec::with_capacity(n);
            let mut pending = VecDeque::new();
            for (i, e) in events.iter().enumerate() {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                sent.push(Instant::now());
                pending.push_back(js.publish(e.subject.clone(), e.payload.clone()).await?);
                if pending.len() >= 1000
                    && let Some(ack) = pending.pop_front()
                {
                    ack.await?;
                }
            }
            for ack in pending {
                ack.await?;
            }
            anyhow::Ok(sent)
        })
    };
    let mut seen: Vec<(Instant, u64)> = Vec::new();
    let target = base + n as u64;
    let deadline = started + Duration::from_secs(600);
    loop {
        let floor = ack_floor(js, stream, consumer).await?;
        seen.push((Instant::now(), floor));
        if floor >= target {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "paced ingest did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let sent = publisher.await??;
    let mut out = Vec::with_capacity(n);
    let mut j = 0;
    for (i, at) in sent.iter().enumerate() {
        let seq = base + i as u64 + 1;
        while seen[j].1 < seq {
            j += 1;
        }
        out.push(seen[j].0.saturating_duration_since(*at));
    }
    Ok(out)
}

/// The `q`-quantile (nearest rank) of some durations, in milliseconds.
pub fn quantile_ms(values: &mut [Duration], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1].as_secs_f64() * 1000.0
}
