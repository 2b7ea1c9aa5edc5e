//! The ingest transaction: one per batch, holding the batch's events, its dead
//! letters, the live state they change and the hours they make dirty. The consumer
//! acks the batch only after this commits.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use butler_events::{Event, EventTime, LiveEffect, RejectReason};
use sqlx::{Sqlite, Transaction};

use crate::{Storage, StorageError, sql};

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

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// For each event of the batch, in order: `true` when it made a new row, `false`
    /// when its id was already stored (a redelivery, or a second message reusing it).
    pub inserted: Vec<bool>,
    /// For each dead letter, in order: `true` when it made a new row, `false` for a
    /// redelivered message already kept.
    pub dead_letters_inserted: Vec<bool>,
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
        let result = self.try_commit_batch(events, dead_letters).await;
        self.note_write(&result);
        result
    }

    async fn try_commit_batch(
        &self,
        events: &[Event],
        dead_letters: &[NewDeadLetter],
    ) -> Result<BatchOutcome, StorageError> {
        let received_at = EventTime::from_datetime(&chrono::Utc::now()).to_string();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = insert_events(&mut tx, events).await?;
        let mut dead_letters_inserted = Vec::with_capacity(dead_letters.len());
        for dl in dead_letters {
            dead_letters_inserted.push(insert_dead_letter(&mut tx, dl, &received_at).await?);
        }
        let new_events = || {
            events
                .iter()
                .zip(&inserted)
                .filter(|(_, new)| **new)
                .map(|(e, _)| e)
        };
        apply_live_effects(&mut tx, new_events()).await?;
        mark_dirty_hours(&mut tx, new_events()).await?;
        crate::tallies::add_tallies(&mut tx, new_events()).await?;
        tx.commit().await?;
        Ok(BatchOutcome {
            inserted,
            dead_letters_inserted,
        })
    }

    pub(crate) fn note_write<T>(&self, result: &Result<T, StorageError>) {
        let failing = matches!(result, Err(e) if !e.is_busy());
        self.write_failing.store(failing, Ordering::Relaxed);
    }
}

/// Inserts the events, returning for each whether it made a new row.
///
/// One JSON array of the batch's rows, bound to two statements: which ids are stored
/// already, and the insert of the rest.
pub(crate) async fn insert_events(
    tx: &mut Transaction<'_, Sqlite>,
    events: &[Event],
) -> Result<Vec<bool>, StorageError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.id.as_str(),
                e.event_type.as_str(),
                e.timestamp.to_string(),
                e.property_id.as_str(),
                e.channel.as_deref(),
                e.guest_id.as_deref(),
                e.staff_id.as_deref(),
                e.conversation_id.as_deref(),
                e.task_id.as_deref(),
                e.value,
                e.duration_ms,
                e.metadata.as_deref(),
            )
        })
        .collect();
    let json = sql::json_rows(&rows)?;
    let stored: HashSet<String> = sqlx::query_scalar(sql::STORED_IDS)
        .bind(&json)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    sqlx::query(sql::INSERT_EVENTS)
        .bind(&json)
        .execute(&mut **tx)
        .await?;
    // The first event with an id not stored before made the row; a later one with the
    // same id, or one whose id was stored already, did not.
    let mut seen: HashSet<&str> = HashSet::with_capacity(events.len());
    Ok(events
        .iter()
        .map(|e| !stored.contains(&e.id) && seen.insert(e.id.as_str()))
        .collect())
}

async fn insert_dead_letter(
    tx: &mut Transaction<'_, Sqlite>,
    dl: &NewDeadLetter,
    received_at: &str,
) -> Result<bool, StorageError> {
    let done = sqlx::query(
        "INSERT OR IGNORE INTO analytics_dead_letters (subject, stream, stream_sequence, \
         published_at, payload, headers, reason, detail, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&dl.subject)
    .bind(&dl.stream)
    .bind(i64::try_from(dl.stream_sequence).unwrap_or(i64::MAX))
    .bind(dl.published_at.map(|t| t.to_string()))
    .bind(dl.payload.as_slice())
    .bind(&dl.headers_json)
    .bind(dl.reason.as_str())
    .bind(&dl.detail)
    .bind(received_at)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Updates live state; an older event (by timestamp, then id) never overwrites a newer
/// one, so arrival order does not matter. One statement per kind of state.
pub(crate) async fn apply_live_effects<'e>(
    tx: &mut Transaction<'_, Sqlite>,
    events: impl Iterator<Item = &'e Event>,
) -> Result<(), StorageError> {
    type Latest<'a> = (
        &'a str,
        Option<&'a str>,
        &'static str,
        String,
        &'a str,
        bool,
    );
    let mut conversations: Vec<Latest<'_>> = Vec::new();
    let mut staff: Vec<Latest<'_>> = Vec::new();
    let mut tasks: Vec<(&str, Option<&str>, bool, bool)> = Vec::new();
    for e in events {
        let latest = |key: Option<&'e str>, flag: bool| {
            (
                e.property_id.as_str(),
                key,
                e.event_type.as_str(),
                e.timestamp.to_string(),
                e.id.as_str(),
                flag,
            )
        };
        match e.live_effect {
            Some(LiveEffect::Conversation { active }) => {
                conversations.push(latest(e.conversation_id.as_deref(), active));
            }
            Some(LiveEffect::Staff { online }) => staff.push(latest(e.staff_id.as_deref(), online)),
            Some(effect @ (LiveEffect::TaskCreated | LiveEffect::TaskCompleted)) => tasks.push((
                e.property_id.as_str(),
                e.task_id.as_deref(),
                effect == LiveEffect::TaskCreated,
                effect == LiveEffect::TaskCompleted,
            )),
            None => {}
        }
    }
    if !conversations.is_empty() {
        let json = sql::json_rows(&conversations)?;
        sqlx::query(sql::UPSERT_LIVE_CONVERSATIONS)
            .bind(json)
            .execute(&mut **tx)
            .await?;
    }
    if !staff.is_empty() {
        let json = sql::json_rows(&staff)?;
        sqlx::query(sql::UPSERT_LIVE_STAFF)
            .bind(json)
            .execute(&mut **tx)
            .await?;
    }
    if !tasks.is_empty() {
        let json = sql::json_rows(&tasks)?;
        sqlx::query(sql::UPSERT_LIVE_TASKS)
            .bind(json)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Stamps every (property, UTC hour) that received a new event with a fresh change
/// sequence, for the aggregator's late-data handling.
pub(crate) async fn mark_dirty_hours<'e>(
    tx: &mut Transaction<'_, Sqlite>,
    events: impl Iterator<Item = &'e Event>,
) -> Result<(), StorageError> {
    let hours: HashSet<(&str, i64)> = events
        .map(|e| {
            (
                e.property_id.as_str(),
                e.timestamp.millis().div_euclid(3_600_000),
            )
        })
        .collect();
    if hours.is_empty() {
        return Ok(());
    }
    let seq: i64 = sqlx::query_scalar(
        "UPDATE ingest_change_counter SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq",
    )
    .fetch_one(&mut **tx)
    .await?;
    let hours: Vec<(&str, String)> = hours
        .into_iter()
        .map(|(p, h)| (p, EventTime::from_millis(h * 3_600_000).hour_start()))
        .collect();
    sqlx::query(sql::UPSERT_DIRTY_HOURS)
        .bind(sql::json_rows(&hours)?)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
