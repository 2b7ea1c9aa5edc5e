//! Rejected messages: listing them, and storing them once their cause is fixed.

use butler_events::{Event, RejectReason};
use sqlx::Row;

use crate::{Storage, StorageError};

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
        let ids = (!filter.ids.is_empty())
            .then(|| serde_json::to_string(&filter.ids).unwrap_or_else(|_| "[]".into()));
        let rows = sqlx::query(
            "SELECT id, subject, stream, stream_sequence, published_at, payload, headers, reason, \
             detail, received_at, replayed_at, replayed_event_id FROM analytics_dead_letters \
             WHERE (?1 IS NULL OR reason = ?1) AND (?2 OR replayed_at IS NULL) \
             AND (?3 IS NULL OR id IN (SELECT value FROM json_each(?3))) \
             AND id > ?5 ORDER BY id LIMIT ?4",
        )
        .bind(filter.reason.map(RejectReason::as_str))
        .bind(filter.include_replayed)
        .bind(ids)
        .bind(filter.limit.map_or(-1, i64::from))
        .bind(filter.after_id.unwrap_or(0))
        .fetch_all(&self.sql_readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    subject: r.try_get("subject")?,
                    stream: r.try_get("stream")?,
                    stream_sequence: u64::try_from(r.try_get::<i64, _>("stream_sequence")?)
                        .unwrap_or_default(),
                    published_at: r.try_get("published_at")?,
                    payload: r.try_get("payload")?,
                    headers_json: r.try_get("headers")?,
                    reason: r.try_get("reason")?,
                    detail: r.try_get("detail")?,
                    received_at: r.try_get("received_at")?,
                    replayed_at: r.try_get("replayed_at")?,
                    replayed_event_id: r.try_get("replayed_event_id")?,
                })
            })
            .collect()
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
        let result = self.try_commit_replay(accepted, still_rejected).await;
        self.note_write(&result);
        result
    }

    async fn try_commit_replay(
        &self,
        accepted: &[(i64, Event)],
        still_rejected: &[(i64, RejectReason, String)],
    ) -> Result<ReplayOutcome, StorageError> {
        self.ingest_writer
            .commit_replay(accepted, still_rejected)
            .await
    }
}
