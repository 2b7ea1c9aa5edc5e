//! The reader task: pull, cut into batches, validate, hand to the writer.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, Context};
use butler_events::Event;
use butler_storage::NewDeadLetter;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc::Sender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::decode::{Decoded, decode, subject_event_type};
use crate::jetstream::ensure_consumer;
use crate::metrics::BatchCounts;
use crate::{ConsumerSettings, IngestMetrics};

/// A batch ready to commit: the messages to ack afterwards and what they became.
#[derive(Debug)]
pub struct PreparedBatch {
    /// The messages, acked once the batch is committed.
    pub messages: Vec<jetstream::Message>,
    /// The valid events, shared with storage's committing thread.
    pub events: Arc<[Event]>,
    /// The rejected messages.
    pub dead_letters: Arc<[NewDeadLetter]>,
    /// Received counts for the metrics; the writer adds what the commit did.
    pub counts: BatchCounts,
}

/// Heartbeat of the pull request: a silent server is noticed within two of these.
const HEARTBEAT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Pulls until `shutdown`, then hands over the partial batch and returns, which
/// closes the channel and lets the writer drain.
pub async fn run(
    js: Context,
    settings: ConsumerSettings,
    metrics: IngestMetrics,
    batches: Sender<PreparedBatch>,
    shutdown: CancellationToken,
) {
    let mut pending: Vec<jetstream::Message> = Vec::with_capacity(settings.batch_size);
    let mut backoff = Duration::from_millis(100);
    'connect: while !shutdown.is_cancelled() {
        let subscription = async {
            let consumer = ensure_consumer(&js, &settings).await?;
            let messages = consumer
                .stream()
                .max_messages_per_batch(settings.batch_size)
                .heartbeat(HEARTBEAT)
                .expires(HEARTBEAT * 6)
                .messages()
                .await?;
            Ok::<_, crate::jetstream::SetupError>(messages)
        };
        let mut messages = tokio::select! {
            () = shutdown.cancelled() => break 'connect,
            result = subscription => match result {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, stream = %settings.stream, consumer = %settings.consumer, "cannot subscribe to the durable consumer");
                    tokio::select! {
                        () = shutdown.cancelled() => break 'connect,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue 'connect;
                }
            }
        };
        tracing::info!(stream = %settings.stream, consumer = %settings.consumer, "consuming");
        metrics.set_consuming(true);
        let mut deadline: Option<Instant> = None;
        let mut due = false;
        loop {
            // A batch is handed over once it is full or its first message has waited
            // the flush interval, as soon as the writer can take it; until then it
            // keeps growing, up to `max_batch`: group commit under a backlog, small
            // commits under light traffic.
            let ready = due || pending.len() >= settings.batch_size;
            let room = pending.len() < settings.max_batch;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    // What the client has received already is committed and acked with
                    // the rest: only messages still on their way stay unacked.
                    while let Some(Some(Ok(msg))) = messages.next().now_or_never() {
                        pending.push(msg);
                    }
                    break 'connect;
                }
                permit = batches.reserve(), if ready => {
                    let Ok(permit) = permit else { return };
                    deadline = None;
                    due = false;
                    let taken = std::mem::replace(&mut pending, Vec::with_capacity(settings.batch_size));
                    permit.send(prepare(taken, &settings));
                }
                () = sleep_until(deadline), if !due && deadline.is_some() => {
                    due = true;
                }
                next = messages.next(), if room => match next {
                    Some(Ok(msg)) => {
                        backoff = Duration::from_millis(100);
                        if pending.is_empty() {
                            deadline = Some(Instant::now() + settings.flush_interval);
                        }
                        pending.push(msg);
                    }
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "pull subscription failed; rebuilding it");
                        metrics.set_consuming(false);
                        metrics.stream_restarted();
                        continue 'connect;
                    }
                    None => {
                        tracing::warn!("pull subscription ended; rebuilding it");
                        metrics.set_consuming(false);
                        metrics.stream_restarted();
                        continue 'connect;
                    }
                }
            }
        }
    }
    metrics.set_consuming(false);
    hand_over(&mut pending, &settings, &batches).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Validates the pending messages and sends them to the writer; `false` when the
/// writer is gone.
async fn hand_over(
    pending: &mut Vec<jetstream::Message>,
    settings: &ConsumerSettings,
    batches: &Sender<PreparedBatch>,
) -> bool {
    if pending.is_empty() {
        return true;
    }
    let messages = std::mem::replace(pending, Vec::with_capacity(settings.batch_size));
    batches.send(prepare(messages, settings)).await.is_ok()
}

/// Judges every message of a batch.
pub fn prepare(messages: Vec<jetstream::Message>, settings: &ConsumerSettings) -> PreparedBatch {
    let now = chrono::Utc::now();
    let prefix = settings.rules.subject_prefix.as_str();
    let mut counts = BatchCounts::default();
    let mut events = Vec::with_capacity(messages.len());
    let mut dead_letters = Vec::new();
    for msg in &messages {
        match subject_event_type(msg.subject.as_str(), prefix) {
            Some(t) => counts.received[t as usize] += 1,
            None => counts.received_unknown += 1,
        }
        match decode(msg, &settings.rules, now) {
            Decoded::Event(event) => events.push(event),
            Decoded::Rejected(dl) => dead_letters.push(dl),
        }
    }
    PreparedBatch {
        messages,
        events: events.into(),
        dead_letters: dead_letters.into(),
        counts,
    }
}
