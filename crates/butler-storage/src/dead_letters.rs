//! Rejected messages: listing them, and storing them once their cause is fixed.

use butler_events::{Event, RejectReason};

use crate::sql::{Param, Role, Row, sql};
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

impl ReplayOutcome {
    /// The outcome of a replay whose accepted letters made new rows as `inserted` says.
    pub(crate) fn of(inserted: &[bool], still_rejected: usize) -> ReplayOutcome {
        let stored = inserted.iter().filter(|new| **new).count();
        ReplayOutcome {
            stored,
            already_stored: inserted.len() - stored,
            still_rejected,
        }
    }
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
        let d = self.backend.dialect();
        let select = sql!(
            d,
            "SELECT id, subject, stream, stream_sequence, published_at, payload, {headers}, reason, \
             detail, received_at, replayed_at, replayed_event_id FROM analytics_dead_letters \
             WHERE ($1 IS NULL OR reason = $1) AND ($2 OR replayed_at IS NULL) \
             AND ($3 IS NULL OR id {ids}) AND id > $5 ORDER BY id LIMIT $4",
            headers = d.json_text("headers"),
            ids = d.in_list(3),
        );
        let ids = (!filter.ids.is_empty()).then_some(filter.ids.as_slice());
        let params = [
            Param::OptText(filter.reason.map(RejectReason::as_str)),
            Param::Bool(filter.include_replayed),
            Param::Ints(ids),
            Param::Int(filter.limit.map_or(i64::MAX, i64::from)),
            Param::Int(filter.after_id.unwrap_or(0)),
        ];
        self.backend
            .fetch(Role::Read, select, &params, dead_letter)
            .await
    }

    /// Dead letters not replayed yet, per reason.
    ///
    /// # Errors
    /// Any database error.
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, i64)>, StorageError> {
        let d = self.backend.dialect();
        let counts = sql!(
            d,
            "SELECT reason, count(*) FROM analytics_dead_letters WHERE replayed_at IS NULL \
             GROUP BY reason ORDER BY reason{}",
            d.bytewise()
        );
        self.backend
            .fetch(Role::Read, counts, &[], |r| Ok((r.text(0)?, r.int(1)?)))
            .await
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

/// A row of [`Storage::list_dead_letters`]'s SELECT.
fn dead_letter(r: &dyn Row) -> Result<DeadLetter, StorageError> {
    let time = |i| Ok::<_, StorageError>(r.opt_time(i)?.map(|t| t.to_string()));
    Ok(DeadLetter {
        id: r.int(0)?,
        subject: r.text(1)?,
        stream: r.text(2)?,
        stream_sequence: u64::try_from(r.int(3)?).unwrap_or_default(),
        published_at: time(4)?,
        payload: r.bytes(5)?,
        headers_json: r.text(6)?,
        reason: r.text(7)?,
        detail: r.text(8)?,
        received_at: time(9)?.unwrap_or_default(),
        replayed_at: time(10)?,
        replayed_event_id: r.opt_text(11)?,
    })
}
