//! The writer task: commit each batch, then ack it.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use butler_events::EventTime;
use butler_storage::{BatchOutcome, Storage};
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::reader::PreparedBatch;
use crate::{ConsumerSettings, IngestMetrics};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long commits may go on once shutdown has begun (`shutdown.grace_s`): a commit
/// failing or hanging past it (a database gone, a lock held) is abandoned and its batch
/// left unacked, for the server to redeliver to the next process.
struct Grace {
    length: Duration,
    ends_at: std::sync::OnceLock<Instant>,
}

impl Grace {
    /// Returns when the grace is over: never before shutdown, then `length` after its
    /// start.
    async fn over(&self, shutdown: &CancellationToken) {
        shutdown.cancelled().await;
        let ends_at = *self.ends_at.get_or_init(|| Instant::now() + self.length);
        tokio::time::sleep_until(ends_at).await;
    }
}

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
    let grace = Grace {
        length: settings.shutdown_grace,
        ends_at: std::sync::OnceLock::new(),
    };
    while let Some(mut batch) = inbox.recv().await {
        let started = Instant::now();
        let Some(outcome) = commit(&storage, &batch, &settings, &metrics, &shutdown, &grace).await
        else {
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
        let new_events = || {
            batch
                .events
                .iter()
                .zip(&outcome.inserted)
                .filter(|(_, new)| **new)
                .map(|(event, _)| event)
        };
        metrics.record_freshness(new_events().map(|event| event.timestamp));
        if let Some(hook) = &settings.on_commit {
            let properties = committed_properties(new_events(), &settings.zones);
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
    grace: &Grace,
) -> Option<BatchOutcome> {
    let mut backoff = Duration::from_millis(50);
    let mut last_progress = Instant::now();
    let give_up = || {
        tracing::warn!(
            messages = batch.messages.len(),
            grace_s = grace.length.as_secs(),
            "shutting down with an uncommitted batch after shutdown.grace_s; it stays unacked and will be redelivered"
        );
        None
    };
    loop {
        let attempt = storage.commit_shared_batch(batch.events.clone(), batch.dead_letters.clone());
        let err = tokio::select! {
            biased;
            result = attempt => match result {
                Ok(outcome) => return Some(outcome),
                Err(err) => err,
            },
            () = grace.over(shutdown) => return give_up(),
        };
        metrics.commit_retried();
        if err.is_busy() {
            tracing::info!(error = %err, messages = batch.messages.len(), "database busy; retrying the commit");
        } else {
            tracing::error!(error = %err, messages = batch.messages.len(), retry_in_ms = backoff.as_millis() as u64, "commit failed; nothing acked, retrying");
        }
        if last_progress.elapsed() >= settings.ack_wait / 2 {
            for msg in &batch.messages {
                // Best effort: a lost progress ack only means a redelivery, which dedup absorbs.
                let _ = msg.ack_with(AckKind::Progress).await;
            }
            last_progress = Instant::now();
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = grace.over(shutdown) => return give_up(),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Each property of `events` once, with the earliest timestamp among its events of
/// the property's current local day: the events today's live figures show, so a
/// value written for them says how fresh it is (an event of an earlier day changes no
/// live figure, and would make a fresh one's delay look like its own).
fn committed_properties<'a>(
    events: impl Iterator<Item = &'a butler_events::Event>,
    zones: &butler_events::Zones,
) -> Vec<(&'a str, Option<EventTime>)> {
    let mut all: Vec<(&str, EventTime)> = events
        .map(|event| (event.property_id.as_str(), event.timestamp))
        .collect();
    all.sort_unstable();
    let now = chrono::Utc::now();
    all.chunk_by(|a, b| a.0 == b.0)
        .map(|same_property| {
            let property = same_property[0].0;
            let zone = zones.of(property);
            let today = butler_events::calendar::start_of_local_date(
                zone,
                now.with_timezone(&zone).date_naive(),
            );
            let today = EventTime::from_datetime(&today);
            let shown = same_property.iter().map(|(_, t)| *t).find(|t| *t >= today);
            (property, shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use butler_events::{Event, EventTime, EventType, Zones};

    #[test]
    fn each_property_once_with_its_earliest_event_of_today() {
        let now = chrono::Utc::now();
        let zone = Zones::default().default_zone();
        let midnight = butler_events::calendar::start_of_local_date(
            zone,
            now.with_timezone(&zone).date_naive(),
        );
        let at = |t: chrono::DateTime<chrono::Utc>| EventTime::from_datetime(&t);
        let event = |property: &str, t| {
            Event::new(
                format!("e{property}{t:?}"),
                EventType::MessageReceived,
                at(t),
                property,
            )
        };
        let yesterday = midnight - chrono::Duration::minutes(1);
        let events = [
            event("b", now),
            event("a", yesterday),
            event("a", now),
            event("a", midnight),
            event("c", yesterday),
        ];
        let properties = super::committed_properties(events.iter(), &Zones::default());
        assert_eq!(
            properties,
            [("a", Some(at(midnight))), ("b", Some(at(now))), ("c", None)]
        );
    }
}
