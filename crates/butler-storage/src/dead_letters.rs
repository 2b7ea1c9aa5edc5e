//! Rejected messages: listing them, and storing them once their cause is fixed.

use butler_events::{Event, RejectReason};

use crate::{Storage, StorageError, dispatch};

/// A stored dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Row id, the handle for `dead-letters replay --id`.
    pub id: i64,
    /// The subject it was published on.
    pub subject: String,
    /// The stream it was read from.
    pub stream: String,
    /// Its stream sequence.
    pub stream_sequence: u64,
    /// When JetStream stored it (UTC, milliseconds).
    pub published_at: Option<String>,
    /// The raw body, byte for byte.
    pub payload: Vec<u8>,
    /// The headers as a JSON object of name → list of values.
    pub headers_json: String,
    /// The reason code.
    pub reason: String,
    /// What was wrong.
    pub detail: String,
    /// When the pipeline rejected it.
    pub received_at: String,
    /// When a replay stored it, if one did.
    pub replayed_at: Option<String>,
    /// The id of the event the replay stored.
    pub replayed_event_id: Option<String>,
}

/// Which dead letters to list or replay.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this reason.
    pub reason: Option<RejectReason>,
    /// Only these row ids (all when empty).
    pub ids: Vec<i64>,
    /// Include those already replayed.
    pub include_replayed: bool,
    /// Only those with a row id above this one (for paging).
    pub after_id: Option<i64>,
    /// At most this many, oldest first.
    pub limit: Option<u32>,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Dead letters that are now valid and made a new event row.
    pub stored: usize,
    /// Dead letters that are now valid but whose event id was already stored.
    pub already_stored: usize,
    /// Dead letters that still fail a rule (their reason is brought up to date).
    pub still_rejected: usize,
}

impl Storage {
    /// Lists dead letters, oldest first.
    ///
    /// # Errors
    /// Any database error.
    pub async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        dispatch!(self.list_dead_letters(filter))
    }

    /// Dead letters not replayed yet, per reason.
    ///
    /// # Errors
    /// Any database error.
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, i64)>, StorageError> {
        dispatch!(self.dead_letter_counts())
    }

    /// Stores the events of dead letters that now pass validation and marks those
    /// letters replayed; brings the reason of those that still fail up to date. One
    /// transaction, so a replay is all or nothing.
    ///
    /// # Errors
    /// Any database error; nothing is changed then.
    pub async fn commit_replay(
        &self,
        accepted: &[(i64, Event)],
        still_rejected: &[(i64, RejectReason, String)],
    ) -> Result<ReplayOutcome, StorageError> {
        let result = dispatch!(self.commit_replay(accepted, still_rejected));
        self.note_write(&result);
        result
    }
}
