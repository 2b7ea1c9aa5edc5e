//! The writer task: commit each batch, then ack it.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use butler_storage::{BatchOutcome, Storage};
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::reader::PreparedBatch;
use crate::{ConsumerSettings, IngestMetrics};

/// How long a failing commit keeps being retried once shutdown has begun. After it
/// the batch is left unacked: the server redelivers it to the next process.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Commits and acks batches until the reader closes the channel.
pub async fn run(
    storage: Storage,
    settings: ConsumerSettings,
    metrics: IngestMetrics,
    mut inbox: Receiver<PreparedBatch>,
    shutdown: CancellationToken,
) {
    // Acks go out from their own task, so the next commit starts while the last
    // batch's acks are still being sent.
    let (to_acker, acks) = tokio::sync::mpsc::channel(4);
    let acker = tokio::spawn(ack_committed(acks, metrics.clone()));
    while let Some(mut batch) = inbox.recv().await {
        let started = Instant::now();
        let Some(outcome) = commit(&storage, &batch, &settings, &metrics, &shutdown).await else {
            continue;
        };
        let commit_time = started.elapsed();
        for (event, new) in batch.events.iter().zip(&outcome.inserted) {
            let slot = event.event_type as usize;
            if *new {
                batch.counts.inserted[slot] += 1;
            } else {
                batch.counts.duplicate[slot] += 1;
            }
        }
        for (dl, new) in batch
            .dead_letters
            .iter()
            .zip(&outcome.dead_letters_inserted)
        {
            if *new {
                batch.counts.rejected[dl.reason as usize] += 1;
            }
        }
        metrics.record_batch(
            &batch.counts,
            batch.messages.len(),
            commit_time,
            &outcome.phases,
        );
        if let Some(hook) = &settings.on_commit {
            let mut properties: Vec<&str> = batch
                .events
                .iter()
                .zip(&outcome.inserted)
                .filter(|(_, new)| **new)
                .map(|(event, _)| event.property_id.as_str())
                .collect();
            properties.sort_unstable();
            properties.dedup();
            if !properties.is_empty() {
                (hook.0)(&properties);
            }
        }
        if to_acker.send(batch.messages).await.is_err() {
            break;
        }
    }
    drop(to_acker);
    let _ = acker.await;
}

/// Acks committed batches in commit order; returns when the writer has finished.
async fn ack_committed(
    mut batches: Receiver<Vec<async_nats::jetstream::Message>>,
    metrics: IngestMetrics,
) {
    while let Some(messages) = batches.recv().await {
        let mut ack_failures = 0;
        for msg in &messages {
            if msg.ack().await.is_err() {
                ack_failures += 1;
            }
        }
        if ack_failures > 0 {
            tracing::warn!(
                failed = ack_failures,
                "acks not sent; the messages will be redelivered and deduplicated"
            );
            metrics.acks_failed(ack_failures);
        }
    }
}

/// Commits with back-off until it succeeds; `None` only when shutdown's grace ran out.
/// While it retries, the batch's messages are kept from redelivery with progress acks.
async fn commit(
    storage: &Storage,
    batch: &PreparedBatch,
    settings: &ConsumerSettings,
    metrics: &IngestMetrics,
    shutdown: &CancellationToken,
) -> Option<BatchOutcome> {
    let mut backoff = Duration::from_millis(50);
    let mut last_progress = Instant::now();
    let mut give_up_at: Option<Instant> = None;
    loop {
        let err = match storage
            .commit_shared_batch(batch.events.clone(), batch.dead_letters.clone())
            .await
        {
            Ok(outcome) => return Some(outcome),
            Err(err) => err,
        };
        metrics.commit_retried();
        if err.is_busy() {
            tracing::info!(error = %err, messages = batch.messages.len(), "database busy; retrying the commit");
        } else {
            tracing::error!(error = %err, messages = batch.messages.len(), retry_in_ms = backoff.as_millis() as u64, "commit failed; nothing acked, retrying");
        }
        if shutdown.is_cancelled() {
            let deadline = *give_up_at.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
            if Instant::now() >= deadline {
                tracing::warn!(
                    messages = batch.messages.len(),
                    "shutting down with an uncommitted batch; it stays unacked and will be redelivered"
                );
                return None;
            }
        }
        if last_progress.elapsed() >= settings.ack_wait / 2 {
            for msg in &batch.messages {
                // Best effort: a lost progress ack only means a redelivery, which dedup absorbs.
                let _ = msg.ack_with(AckKind::Progress).await;
            }
            last_progress = Instant::now();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
