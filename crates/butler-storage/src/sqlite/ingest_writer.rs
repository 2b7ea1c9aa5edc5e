//! The ingest writer: one thread owning one SQLite connection, running each batch's
//! whole transaction with cached prepared statements, a row at a time.
//!
//! Why not sqlx here: sqlx runs every statement on a worker thread of its own, so each
//! statement is a round trip between threads, and it copies every bound value twice;
//! per event, that cost more than the insert itself (`BENCHMARKS.md`). Aggregation
//! and operator writes go through sqlx (`crate::sql`), reads through `row_readers`.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, mpsc};

use butler_events::{Event, EventTime, LiveEffect, RejectReason};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::ingest::new_events;
use crate::ingest::{BatchOutcome, NewDeadLetter, PhaseClock};
use crate::live_state::{LiveTable, StoredEvent, suspects};
use crate::tallies::{HOUR_MS, hour_tallies, tally_hour_key};
use crate::{ReplayOutcome, StorageError};

/// What the writer thread is asked to do.
enum Job {
    Ingest {
        events: Arc<[Event]>,
        dead_letters: Arc<[NewDeadLetter]>,
        reply: oneshot::Sender<Result<BatchOutcome, StorageError>>,
    },
    Replay {
        accepted: Vec<(i64, Event)>,
        still_rejected: Vec<(i64, RejectReason, String)>,
        reply: oneshot::Sender<Result<ReplayOutcome, StorageError>>,
    },
    Close(oneshot::Sender<()>),
}

/// Handle on the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct IngestWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

fn gone() -> StorageError {
    StorageError::WriterGone
}

impl IngestWriter {
    /// Starts the thread on `conn`, a writer connection (`ConnectionKind::Writer`).
    pub(crate) fn start(conn: Connection) -> Result<IngestWriter, std::io::Error> {
        conn.set_prepared_statement_cache_capacity(32);
        let (jobs, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || serve(conn, &inbox))?;
        Ok(IngestWriter { jobs })
    }

    pub(crate) async fn commit_batch(
        &self,
        events: Arc<[Event]>,
        dead_letters: Arc<[NewDeadLetter]>,
    ) -> Result<BatchOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Ingest {
                events,
                dead_letters,
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub(crate) async fn commit_replay(
        &self,
        accepted: &[(i64, Event)],
        still_rejected: &[(i64, RejectReason, String)],
    ) -> Result<ReplayOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Replay {
                accepted: accepted.to_vec(),
                still_rejected: still_rejected.to_vec(),
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Finishes the thread, closing (and checkpointing) its connection.
    pub(crate) async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.jobs.send(Job::Close(reply)).is_ok() {
            let _ = done.await;
        }
    }
}

fn serve(mut conn: Connection, inbox: &mpsc::Receiver<Job>) {
    while let Ok(job) = inbox.recv() {
        match job {
            Job::Ingest {
                events,
                dead_letters,
                reply,
            } => {
                let _ = reply.send(ingest(&mut conn, &events, &dead_letters));
            }
            Job::Replay {
                accepted,
                still_rejected,
                reply,
            } => {
                let _ = reply.send(replay(&mut conn, &accepted, &still_rejected));
            }
            Job::Close(reply) => {
                let _ = conn.close();
                let _ = reply.send(());
                return;
            }
        }
    }
}

fn ingest(
    conn: &mut Connection,
    events: &[Event],
    dead_letters: &[NewDeadLetter],
) -> Result<BatchOutcome, StorageError> {
    let received_at = EventTime::from_datetime(&chrono::Utc::now()).to_string();
    let mut clock = PhaseClock::start();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inserted = insert_events(&tx, events)?;
    let mut dead_letters_inserted = Vec::with_capacity(dead_letters.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO analytics_dead_letters (subject, stream, stream_sequence, \
             published_at, payload, headers, reason, detail, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for dl in dead_letters {
            let n = stmt.execute(params![
                dl.subject,
                dl.stream,
                i64::try_from(dl.stream_sequence).unwrap_or(i64::MAX),
                dl.published_at.map(|t| t.to_string()),
                dl.payload,
                dl.headers_json,
                dl.reason.as_str(),
                dl.detail,
                received_at,
            ])?;
            dead_letters_inserted.push(n == 1);
        }
    }
    clock.lap(|p| &mut p.events);
    let new: Vec<&Event> = new_events(events, &inserted);
    derived_state(&tx, &new, &mut clock)?;
    tx.commit()?;
    clock.lap(|p| &mut p.commit);
    Ok(BatchOutcome {
        inserted,
        dead_letters_inserted,
        phases: clock.phases,
    })
}

fn replay(
    conn: &mut Connection,
    accepted: &[(i64, Event)],
    still_rejected: &[(i64, RejectReason, String)],
) -> Result<ReplayOutcome, StorageError> {
    let now = EventTime::from_datetime(&chrono::Utc::now()).to_string();
    let events: Vec<Event> = accepted.iter().map(|(_, e)| e.clone()).collect();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inserted = insert_events(&tx, &events)?;
    derived_state(
        &tx,
        &new_events(&events, &inserted),
        &mut PhaseClock::start(),
    )?;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE analytics_dead_letters SET replayed_at = ?1, replayed_event_id = ?2 WHERE id = ?3",
        )?;
        for (id, event) in accepted {
            stmt.execute(params![now, event.id, id])?;
        }
        let mut stmt = tx.prepare_cached(
            "UPDATE analytics_dead_letters SET reason = ?1, detail = ?2 WHERE id = ?3",
        )?;
        for (id, reason, detail) in still_rejected {
            stmt.execute(params![reason.as_str(), detail, id])?;
        }
    }
    tx.commit()?;
    Ok(ReplayOutcome::of(&inserted, still_rejected.len()))
}

/// Inserts the events; for each, whether it made a new row (the first stored wins).
fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
) -> Result<Vec<bool>, StorageError> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO analytics_events (id, event_type, timestamp, property_id, \
         channel, guest_id, staff_id, conversation_id, task_id, value, duration_ms, metadata) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut inserted = Vec::with_capacity(events.len());
    for e in events {
        let n = stmt.execute(params![
            e.id,
            e.event_type.as_str(),
            e.timestamp.to_string(),
            e.property_id,
            e.channel,
            e.guest_id,
            e.staff_id,
            e.conversation_id,
            e.task_id,
            e.value,
            e.duration_ms,
            e.metadata,
        ])?;
        inserted.push(n == 1);
    }
    Ok(inserted)
}

/// What new events change besides their rows: live state, dirty hours, tallies.
fn derived_state(
    tx: &rusqlite::Transaction<'_>,
    new: &[&Event],
    clock: &mut PhaseClock,
) -> Result<(), StorageError> {
    if new.is_empty() {
        return Ok(());
    }
    let rebuilt = pruned_keys_events(tx, new)?;
    if rebuilt.is_empty() {
        live_state(tx, new)?;
    } else {
        let all: Vec<&Event> = new.iter().copied().chain(&rebuilt).collect();
        live_state(tx, &all)?;
    }
    clock.lap(|p| &mut p.live_state);
    dirty_hours(tx, new)?;
    clock.lap(|p| &mut p.dirty_hours);
    tallies(tx, new)?;
    clock.lap(|p| &mut p.tallies);
    Ok(())
}

/// The raw events of the keys whose live rows may have been pruned and are absent
/// (`crate::live_state`), to apply with the batch's new events.
fn pruned_keys_events(
    tx: &rusqlite::Transaction<'_>,
    new: &[&Event],
) -> Result<Vec<Event>, StorageError> {
    let horizon: Option<String> = tx
        .prepare_cached("SELECT pruned_before FROM live_state_horizon WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(horizon) = horizon.as_deref().map(parse_time).transpose()? else {
        return Ok(Vec::new());
    };
    let mut rebuilt = Vec::new();
    for (table, property, key) in suspects(new, Some(EventTime::from_datetime(&horizon))) {
        let mut stmt = tx.prepare_cached(&REBUILD[table as usize])?;
        let rows = stmt.query_map(params![property, key], |r| {
            Ok(StoredEvent {
                id: r.get(0)?,
                event_type: r.get(1)?,
                timestamp: parse_time(&r.get::<_, String>(2)?)?,
                metadata: r.get(3)?,
            })
        })?;
        for row in rows {
            rebuilt.extend(row?.into_event(table, property, key));
        }
    }
    Ok(rebuilt)
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, rusqlite::Error> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })
}

/// Per live table (in `LiveTable` order): a key's raw events, when it has no row.
static REBUILD: LazyLock<[String; 3]> = LazyLock::new(|| {
    LiveTable::ALL.map(|table| {
        let (name, key, types) = (table.name(), table.key_column(), table.event_types_clause());
        format!(
            "SELECT id, event_type, timestamp, metadata FROM analytics_events \
             WHERE property_id = ?1 AND {key} = ?2 AND {types} \
             AND NOT EXISTS (SELECT 1 FROM {name} WHERE property_id = ?1 AND {key} = ?2)"
        )
    })
});

/// Upsert of the latest event per key; the newer one (timestamp, then id) wins.
fn latest(table: &str, key: &str, flag: &str) -> String {
    format!(
        "INSERT INTO {table} (property_id, {key}, last_event_type, last_timestamp, \
         last_event_id, {flag}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (property_id, {key}) DO UPDATE SET \
         last_event_type = excluded.last_event_type, last_timestamp = excluded.last_timestamp, \
         last_event_id = excluded.last_event_id, {flag} = excluded.{flag} \
         WHERE (excluded.last_timestamp, excluded.last_event_id) > \
         ({table}.last_timestamp, {table}.last_event_id)"
    )
}

// Built once, not per event: the statement cache is keyed by the text.
static LATEST_CONVERSATION: LazyLock<String> =
    LazyLock::new(|| latest("live_conversations", "conversation_id", "active"));
static LATEST_STAFF: LazyLock<String> =
    LazyLock::new(|| latest("live_staff", "staff_id", "online"));

/// Live state moves only forward in event time (timestamp, then id).
fn live_state(tx: &rusqlite::Transaction<'_>, new: &[&Event]) -> Result<(), StorageError> {
    for e in new {
        match e.live_effect {
            Some(LiveEffect::Conversation { active }) => {
                upsert_latest(
                    tx,
                    &LATEST_CONVERSATION,
                    e,
                    e.conversation_id.as_deref(),
                    active,
                )?;
            }
            Some(LiveEffect::Staff { online }) => {
                upsert_latest(tx, &LATEST_STAFF, e, e.staff_id.as_deref(), online)?;
            }
            Some(effect @ (LiveEffect::TaskCreated | LiveEffect::TaskCompleted)) => {
                tx.prepare_cached(
                    "INSERT INTO live_tasks (property_id, task_id, created, completed, \
                     last_timestamp) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (property_id, task_id) DO UPDATE SET \
                     created = max(created, excluded.created), \
                     completed = max(completed, excluded.completed), \
                     last_timestamp = max(last_timestamp, excluded.last_timestamp)",
                )?
                .execute(params![
                    e.property_id,
                    e.task_id,
                    effect == LiveEffect::TaskCreated,
                    effect == LiveEffect::TaskCompleted,
                    e.timestamp.to_string()
                ])?;
            }
            None => {}
        }
    }
    Ok(())
}

/// One conversation's or staff member's latest event, if `e` is newer.
fn upsert_latest(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    e: &Event,
    key: Option<&str>,
    flag: bool,
) -> Result<(), StorageError> {
    tx.prepare_cached(sql)?.execute(params![
        e.property_id,
        key,
        e.event_type.as_str(),
        e.timestamp.to_string(),
        e.id,
        flag
    ])?;
    Ok(())
}

/// Stamps every (property, UTC hour) that received a new event with a fresh change
/// sequence, for the aggregator's late-data handling.
fn dirty_hours(tx: &rusqlite::Transaction<'_>, new: &[&Event]) -> Result<(), StorageError> {
    let hours: HashSet<(&str, i64)> = new
        .iter()
        .map(|e| {
            (
                e.property_id.as_str(),
                e.timestamp.millis().div_euclid(HOUR_MS),
            )
        })
        .collect();
    let seq: i64 = tx
        .query_row(
            "UPDATE ingest_change_counter SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO agg_dirty_hours (property_id, hour_start, change_seq) VALUES (?1, ?2, ?3) \
         ON CONFLICT (property_id, hour_start) DO UPDATE SET change_seq = excluded.change_seq",
    )?;
    for (property, hour) in hours {
        stmt.execute(params![
            property,
            EventTime::from_millis(hour * HOUR_MS).hour_start(),
            seq
        ])?;
    }
    Ok(())
}

/// Adds the new events of the tallied types to their hour's tallies.
fn tallies(tx: &rusqlite::Transaction<'_>, new: &[&Event]) -> Result<(), StorageError> {
    let hours = hour_tallies(new);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO event_tallies_hour (property_id, hour, event_type, channel, events, \
         value_sum, value_count, duration_sum, duration_count, rating_1, rating_2, rating_3, \
         rating_4, rating_5) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
         ON CONFLICT (property_id, hour, event_type, channel) DO UPDATE SET \
         events = events + excluded.events, value_sum = value_sum + excluded.value_sum, \
         value_count = value_count + excluded.value_count, \
         duration_sum = duration_sum + excluded.duration_sum, \
         duration_count = duration_count + excluded.duration_count, \
         rating_1 = rating_1 + excluded.rating_1, rating_2 = rating_2 + excluded.rating_2, \
         rating_3 = rating_3 + excluded.rating_3, rating_4 = rating_4 + excluded.rating_4, \
         rating_5 = rating_5 + excluded.rating_5",
    )?;
    for ((property, hour, event_type, channel), t) in hours {
        let [r1, r2, r3, r4, r5] = t.ratings.0;
        stmt.execute(params![
            property,
            tally_hour_key(EventTime::from_millis(hour * HOUR_MS).to_datetime()),
            event_type.as_str(),
            channel,
            t.events,
            t.value_sum,
            t.value_count,
            t.duration_sum,
            t.duration_count,
            r1,
            r2,
            r3,
            r4,
            r5,
        ])?;
    }
    Ok(())
}
