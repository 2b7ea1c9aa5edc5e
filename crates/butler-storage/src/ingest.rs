//! The ingest transaction: one per batch, holding the batch's events, its dead
//! letters, the live state they change and the hours they make dirty. The consumer
//! acks the batch only after this commits.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use butler_events::{Event, EventTime, RejectReason};

use crate::{Storage, StorageError, dispatch};

/// A rejected message to keep, byte for byte.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    /// The subject it was published on.
    pub subject: String,
    /// The stream it was read from.
    pub stream: String,
    /// Its stream sequence: with the stream, what makes a redelivery the same message.
    pub stream_sequence: u64,
    /// When JetStream stored it.
    pub published_at: Option<EventTime>,
    /// The raw body.
    pub payload: Vec<u8>,
    /// The headers as a JSON object of name → list of values.
    pub headers_json: String,
    /// Why it was rejected.
    pub reason: RejectReason,
    /// The sentence saying what to fix.
    pub detail: String,
}

/// Where a batch's transaction spent its time, for the commit-phase metrics that
/// show operators (and the benchmark) what each part of ingest costs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitPhases {
    /// Inserting the events and dead letters.
    pub events: Duration,
    /// Live state, with the keys rebuilt from raw events.
    pub live_state: Duration,
    /// Stamping the dirty hours.
    pub dirty_hours: Duration,
    /// Adding to the hour tallies.
    pub tallies: Duration,
    /// The commit itself (the WAL write and its fsync on SQLite).
    pub commit: Duration,
}

impl CommitPhases {
    /// Each phase with its metric label.
    pub fn labelled(&self) -> [(&'static str, Duration); 5] {
        [
            ("events", self.events),
            ("live_state", self.live_state),
            ("dirty_hours", self.dirty_hours),
            ("tallies", self.tallies),
            ("commit", self.commit),
        ]
    }
}

/// Times the phases of one transaction, each from the end of the one before.
pub(crate) struct PhaseClock {
    last: Instant,
    /// What was timed so far.
    pub(crate) phases: CommitPhases,
}

impl PhaseClock {
    pub(crate) fn start() -> PhaseClock {
        PhaseClock {
            last: Instant::now(),
            phases: CommitPhases::default(),
        }
    }

    /// Ends the phase `pick` chooses, adding its time.
    pub(crate) fn lap(&mut self, pick: fn(&mut CommitPhases) -> &mut Duration) {
        let now = Instant::now();
        *pick(&mut self.phases) += now - self.last;
        self.last = now;
    }
}

/// What a committed batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// For each event of the batch, in order: `true` when it made a new row, `false`
    /// when its id was already stored (a redelivery, or a second message reusing it).
    pub inserted: Vec<bool>,
    /// For each dead letter, in order: `true` when it made a new row, `false` for a
    /// redelivered message already kept.
    pub dead_letters_inserted: Vec<bool>,
    /// Where the transaction's time went.
    pub phases: CommitPhases,
}

/// The events of a batch that made a new row, by `inserted` (one flag per event): only
/// they change derived state.
pub(crate) fn new_events<'e>(events: &'e [Event], inserted: &[bool]) -> Vec<&'e Event> {
    events
        .iter()
        .zip(inserted)
        .filter(|(_, new)| **new)
        .map(|(e, _)| e)
        .collect()
}

impl Storage {
    /// Stores a batch in one transaction and returns once it is durable on disk.
    ///
    /// # Errors
    /// Any database error; nothing of the batch is stored then, and the caller keeps
    /// the messages unacked and retries (see [`StorageError::is_busy`]).
    pub async fn commit_batch(
        &self,
        events: &[Event],
        dead_letters: &[NewDeadLetter],
    ) -> Result<BatchOutcome, StorageError> {
        self.commit_shared_batch(events.into(), dead_letters.into())
            .await
    }

    /// [`Storage::commit_batch`] for a caller that keeps the batch to retry it: the
    /// batch is shared with the committing thread instead of copied, which at ingest
    /// rates saves a dozen allocations per event.
    ///
    /// # Errors
    /// As [`Storage::commit_batch`].
    pub async fn commit_shared_batch(
        &self,
        events: Arc<[Event]>,
        dead_letters: Arc<[NewDeadLetter]>,
    ) -> Result<BatchOutcome, StorageError> {
        let result = dispatch!(self.commit_batch(events, dead_letters));
        self.note_write(&result);
        result
    }

    pub(crate) fn note_write<T>(&self, result: &Result<T, StorageError>) {
        let failing = matches!(result, Err(e) if !e.is_busy());
        self.write_failing.store(failing, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
