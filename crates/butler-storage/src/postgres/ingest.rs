//! A batch's transaction on PostgreSQL: one statement per kind of row, each over
//! arrays (`UNNEST`), in key order so that instances committing at once take their
//! row locks in the same order and never deadlock. Events and dead letters keep their
//! first stored copy (`ON CONFLICT DO NOTHING`), live state moves only forward in
//! event time, tallies add up, and the dirty hours are stamped with the next change
//! sequence last, so the counter's row lock is held only for the end of the
//! transaction.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use butler_events::{Event, EventTime, LiveEffect, RejectReason};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::PgDb;
use crate::ingest::PhaseClock;
use crate::ingest::new_events;
use crate::live_state::LIVE_STATE_LOCK;
use crate::live_state::{LiveTable, StoredEvent, suspects};
use crate::tallies::{HOUR_MS, hour_tallies, tally_hour_key};
use crate::{BatchOutcome, NewDeadLetter, ReplayOutcome, StorageError};

impl PgDb {
    pub(crate) async fn commit_batch(
        &self,
        events: Arc<[Event]>,
        dead_letters: Arc<[NewDeadLetter]>,
    ) -> Result<BatchOutcome, StorageError> {
        let received_at = Utc::now();
        let mut clock = PhaseClock::start();
        let mut tx = self.pool.begin().await?;
        lock_live_state(&mut tx).await?;
        let inserted = insert_events(&mut tx, &events).await?;
        let dead_letters_inserted =
            insert_dead_letters(&mut tx, &dead_letters, received_at).await?;
        clock.lap(|p| &mut p.events);
        derived_state(&mut tx, &new_events(&events, &inserted), &mut clock).await?;
        tx.commit().await?;
        clock.lap(|p| &mut p.commit);
        Ok(BatchOutcome {
            inserted,
            dead_letters_inserted,
            phases: clock.phases,
        })
    }

    pub(crate) async fn commit_replay(
        &self,
        accepted: &[(i64, Event)],
        still_rejected: &[(i64, RejectReason, String)],
    ) -> Result<ReplayOutcome, StorageError> {
        let now = Utc::now();
        let events: Vec<Event> = accepted.iter().map(|(_, e)| e.clone()).collect();
        let mut tx = self.pool.begin().await?;
        lock_live_state(&mut tx).await?;
        let inserted = insert_events(&mut tx, &events).await?;
        derived_state(
            &mut tx,
            &new_events(&events, &inserted),
            &mut PhaseClock::start(),
        )
        .await?;
        let (ids, event_ids): (Vec<i64>, Vec<String>) =
            accepted.iter().map(|(id, e)| (*id, e.id.clone())).unzip();
        sqlx::query(
            "UPDATE analytics_dead_letters d SET replayed_at = $1, replayed_event_id = u.event_id \
             FROM UNNEST($2::int8[], $3::text[]) AS u(id, event_id) WHERE d.id = u.id",
        )
        .bind(now)
        .bind(&ids)
        .bind(&event_ids)
        .execute(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(still_rejected.len());
        let mut reasons = Vec::with_capacity(still_rejected.len());
        let mut details = Vec::with_capacity(still_rejected.len());
        for (id, reason, detail) in still_rejected {
            ids.push(*id);
            reasons.push(reason.as_str());
            details.push(detail.as_str());
        }
        sqlx::query(
            "UPDATE analytics_dead_letters d SET reason = u.reason, detail = u.detail \
             FROM UNNEST($1::int8[], $2::text[], $3::text[]) AS u(id, reason, detail) WHERE d.id = u.id",
        )
        .bind(&ids)
        .bind(&reasons)
        .bind(&details)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReplayOutcome::of(&inserted, still_rejected.len()))
    }
}

/// Inserts the events; for each, whether it made a new row: the first of the batch
/// with its id, when no earlier batch stored that id.
async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[Event],
) -> Result<Vec<bool>, StorageError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let n = events.len();
    let mut ids = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut times: Vec<DateTime<Utc>> = Vec::with_capacity(n);
    let mut properties = Vec::with_capacity(n);
    let mut channels = Vec::with_capacity(n);
    let mut guests = Vec::with_capacity(n);
    let mut staff = Vec::with_capacity(n);
    let mut conversations = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    for e in events {
        ids.push(e.id.as_str());
        types.push(e.event_type.as_str());
        times.push(e.timestamp.to_datetime());
        properties.push(e.property_id.as_str());
        channels.push(e.channel.as_deref());
        guests.push(e.guest_id.as_deref());
        staff.push(e.staff_id.as_deref());
        conversations.push(e.conversation_id.as_deref());
        tasks.push(e.task_id.as_deref());
        values.push(e.value);
        durations.push(e.duration_ms);
        metadata.push(e.metadata.as_deref());
    }
    // Rows go in id order (the batch's order among equal ids), so the first of the
    // batch with an id is the one stored, and concurrent batches lock ids in the
    // same order.
    let stored: Vec<String> = sqlx::query_scalar(
        "INSERT INTO analytics_events (id, event_type, \"timestamp\", property_id, channel, \
         guest_id, staff_id, conversation_id, task_id, value, duration_ms, metadata) \
         SELECT id, event_type, ts, property_id, channel, guest_id, staff_id, conversation_id, \
                task_id, value, duration_ms, metadata::jsonb \
         FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::float8[], $11::int8[], \
                     $12::text[]) WITH ORDINALITY \
              AS u(id, event_type, ts, property_id, channel, guest_id, staff_id, \
                   conversation_id, task_id, value, duration_ms, metadata, n) \
         ORDER BY id, n \
         ON CONFLICT (id) DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&times)
    .bind(&properties)
    .bind(&channels)
    .bind(&guests)
    .bind(&staff)
    .bind(&conversations)
    .bind(&tasks)
    .bind(&values)
    .bind(&durations)
    .bind(&metadata)
    .fetch_all(&mut **tx)
    .await?;
    let mut stored: HashSet<String> = stored.into_iter().collect();
    Ok(events.iter().map(|e| stored.remove(&e.id)).collect())
}

async fn insert_dead_letters(
    tx: &mut Transaction<'_, Postgres>,
    letters: &[NewDeadLetter],
    received_at: DateTime<Utc>,
) -> Result<Vec<bool>, StorageError> {
    if letters.is_empty() {
        return Ok(Vec::new());
    }
    let n = letters.len();
    let mut subjects = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    let mut sequences = Vec::with_capacity(n);
    let mut published = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut headers = Vec::with_capacity(n);
    let mut reasons = Vec::with_capacity(n);
    let mut details = Vec::with_capacity(n);
    for dl in letters {
        subjects.push(dl.subject.as_str());
        streams.push(dl.stream.as_str());
        sequences.push(i64::try_from(dl.stream_sequence).unwrap_or(i64::MAX));
        published.push(dl.published_at.map(EventTime::to_datetime));
        payloads.push(dl.payload.as_slice());
        headers.push(dl.headers_json.as_str());
        reasons.push(dl.reason.as_str());
        details.push(dl.detail.as_str());
    }
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO analytics_dead_letters (subject, stream, stream_sequence, published_at, \
         payload, headers, reason, detail, received_at) \
         SELECT subject, stream, seq, published_at, payload, headers::jsonb, reason, detail, $9 \
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::timestamptz[], $5::bytea[], \
                     $6::text[], $7::text[], $8::text[]) WITH ORDINALITY \
              AS u(subject, stream, seq, published_at, payload, headers, reason, detail, n) \
         ORDER BY stream, seq, n \
         ON CONFLICT (stream, stream_sequence) DO NOTHING RETURNING stream, stream_sequence",
    )
    .bind(&subjects)
    .bind(&streams)
    .bind(&sequences)
    .bind(&published)
    .bind(&payloads)
    .bind(&headers)
    .bind(&reasons)
    .bind(&details)
    .bind(received_at)
    .fetch_all(&mut **tx)
    .await?;
    let mut stored: HashSet<(String, i64)> = stored.into_iter().collect();
    Ok(letters
        .iter()
        .map(|dl| {
            let seq = i64::try_from(dl.stream_sequence).unwrap_or(i64::MAX);
            stored.remove(&(dl.stream.clone(), seq))
        })
        .collect())
}

/// What new events change besides their rows: live state, tallies, dirty hours.
async fn derived_state(
    tx: &mut Transaction<'_, Postgres>,
    new: &[&Event],
    clock: &mut PhaseClock,
) -> Result<(), StorageError> {
    if new.is_empty() {
        return Ok(());
    }
    let rebuilt = pruned_keys_events(tx, new).await?;
    if rebuilt.is_empty() {
        live_state(tx, new).await?;
    } else {
        let all: Vec<&Event> = new.iter().copied().chain(&rebuilt).collect();
        live_state(tx, &all).await?;
    }
    clock.lap(|p| &mut p.live_state);
    tallies(tx, new).await?;
    clock.lap(|p| &mut p.tallies);
    dirty_hours(tx, new).await?;
    clock.lap(|p| &mut p.dirty_hours);
    Ok(())
}

/// A suspect key's raw event: property, key, id, type, timestamp, metadata.
type KeyEvent = (
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<String>,
);

/// Takes the shared live-state lock for the rest of the transaction, so that no prune
/// runs between reading the horizon and writing live rows. Taken first, before the
/// transaction holds any row lock: a transaction that waited for it while holding row
/// locks could close a cycle with a prune waiting for the lock and an ingest waiting
/// for those rows.
async fn lock_live_state(tx: &mut Transaction<'_, Postgres>) -> Result<(), StorageError> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(LIVE_STATE_LOCK)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The raw events of the keys whose live rows may have been pruned and are absent
/// (`crate::live_state`), to apply with the batch's new events; the transaction holds
/// the shared live-state lock ([`lock_live_state`]).
async fn pruned_keys_events(
    tx: &mut Transaction<'_, Postgres>,
    new: &[&Event],
) -> Result<Vec<Event>, StorageError> {
    if new.iter().all(|e| e.live_effect.is_none()) {
        return Ok(Vec::new());
    }
    let horizon: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT pruned_before FROM live_state_horizon WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await?
            .flatten();
    let mut by_table: BTreeMap<LiveTable, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for (table, property, key) in suspects(new, horizon.map(|h| EventTime::from_datetime(&h))) {
        let (properties, keys) = by_table.entry(table).or_default();
        properties.push(property);
        keys.push(key);
    }
    let mut rebuilt = Vec::new();
    for (table, (properties, keys)) in by_table {
        let (name, key, types) = (table.name(), table.key_column(), table.event_types_clause());
        let rows: Vec<KeyEvent> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT u.p, u.k, e.id, e.event_type, e.\"timestamp\", e.metadata::text \
                 FROM UNNEST($1::text[], $2::text[]) AS u(p, k) \
                 JOIN analytics_events e ON e.property_id = u.p AND e.{key} = u.k AND e.{types} \
                 WHERE NOT EXISTS (SELECT 1 FROM {name} l WHERE l.property_id = u.p AND l.{key} = u.k)"
            )))
            .bind(&properties)
            .bind(&keys)
            .fetch_all(&mut **tx)
            .await?;
        for (property, key, id, event_type, timestamp, metadata) in rows {
            let stored = StoredEvent {
                id,
                event_type,
                timestamp,
                metadata,
            };
            rebuilt.extend(stored.into_event(table, &property, &key));
        }
    }
    Ok(rebuilt)
}

/// The latest event of a key, and what it leaves the key as.
struct Latest<'e> {
    event: &'e Event,
    flag: bool,
}

/// Keeps, per key, the newest event (timestamp, then id).
fn newest<'e>(
    into: &mut BTreeMap<(&'e str, &'e str), Latest<'e>>,
    key: (&'e str, &'e str),
    event: &'e Event,
    flag: bool,
) {
    let newer = |old: &Latest<'_>| {
        (event.timestamp, event.id.as_str()) > (old.event.timestamp, old.event.id.as_str())
    };
    match into.get(&key) {
        Some(old) if !newer(old) => {}
        _ => {
            into.insert(key, Latest { event, flag });
        }
    }
}

/// Live state moves only forward in event time, whichever instance commits first.
async fn live_state(
    tx: &mut Transaction<'_, Postgres>,
    new: &[&Event],
) -> Result<(), StorageError> {
    let mut conversations = BTreeMap::new();
    let mut staff = BTreeMap::new();
    let mut tasks: BTreeMap<(&str, &str), (bool, bool, EventTime)> = BTreeMap::new();
    for e in new {
        let property = e.property_id.as_str();
        match (e.live_effect, &e.conversation_id, &e.staff_id, &e.task_id) {
            (Some(LiveEffect::Conversation { active }), Some(c), _, _) => {
                newest(&mut conversations, (property, c), e, active);
            }
            (Some(LiveEffect::Staff { online }), _, Some(s), _) => {
                newest(&mut staff, (property, s), e, online);
            }
            (
                Some(effect @ (LiveEffect::TaskCreated | LiveEffect::TaskCompleted)),
                _,
                _,
                Some(t),
            ) => {
                let task = tasks
                    .entry((property, t))
                    .or_insert((false, false, e.timestamp));
                task.0 |= effect == LiveEffect::TaskCreated;
                task.1 |= effect == LiveEffect::TaskCompleted;
                task.2 = task.2.max(e.timestamp);
            }
            _ => {}
        }
    }
    upsert_latest(
        tx,
        "live_conversations",
        "conversation_id",
        "active",
        &conversations,
    )
    .await?;
    upsert_latest(tx, "live_staff", "staff_id", "online", &staff).await?;
    if !tasks.is_empty() {
        let mut properties = Vec::with_capacity(tasks.len());
        let mut ids = Vec::with_capacity(tasks.len());
        let mut created = Vec::with_capacity(tasks.len());
        let mut completed = Vec::with_capacity(tasks.len());
        let mut last: Vec<DateTime<Utc>> = Vec::with_capacity(tasks.len());
        for ((property, task), (c, d, at)) in &tasks {
            properties.push(*property);
            ids.push(*task);
            created.push(*c);
            completed.push(*d);
            last.push(at.to_datetime());
        }
        sqlx::query(
            "INSERT INTO live_tasks (property_id, task_id, created, completed, last_timestamp) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bool[], $4::bool[], $5::timestamptz[]) \
             ON CONFLICT (property_id, task_id) DO UPDATE SET \
             created = live_tasks.created OR excluded.created, \
             completed = live_tasks.completed OR excluded.completed, \
             last_timestamp = GREATEST(live_tasks.last_timestamp, excluded.last_timestamp)",
        )
        .bind(&properties)
        .bind(&ids)
        .bind(&created)
        .bind(&completed)
        .bind(&last)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Upserts each key's newest event into `table`, unless the stored one is newer.
async fn upsert_latest(
    tx: &mut Transaction<'_, Postgres>,
    table: &'static str,
    key: &'static str,
    flag: &'static str,
    latest: &BTreeMap<(&str, &str), Latest<'_>>,
) -> Result<(), StorageError> {
    if latest.is_empty() {
        return Ok(());
    }
    let n = latest.len();
    let mut properties = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut times: Vec<DateTime<Utc>> = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut flags = Vec::with_capacity(n);
    for ((property, k), l) in latest {
        properties.push(*property);
        keys.push(*k);
        types.push(l.event.event_type.as_str());
        times.push(l.event.timestamp.to_datetime());
        ids.push(l.event.id.as_str());
        flags.push(l.flag);
    }
    let sql = format!(
        "INSERT INTO {table} (property_id, {key}, last_event_type, last_timestamp, last_event_id, {flag}) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::bool[]) \
         ON CONFLICT (property_id, {key}) DO UPDATE SET \
         last_event_type = excluded.last_event_type, last_timestamp = excluded.last_timestamp, \
         last_event_id = excluded.last_event_id, {flag} = excluded.{flag} \
         WHERE (excluded.last_timestamp, excluded.last_event_id) > \
               ({table}.last_timestamp, {table}.last_event_id)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&properties)
        .bind(&keys)
        .bind(&types)
        .bind(&times)
        .bind(&ids)
        .bind(&flags)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Adds the new events of the tallied types to their hour's tallies.
async fn tallies(tx: &mut Transaction<'_, Postgres>, new: &[&Event]) -> Result<(), StorageError> {
    let hours = hour_tallies(new);
    if hours.is_empty() {
        return Ok(());
    }
    let n = hours.len();
    let mut properties = Vec::with_capacity(n);
    let mut hour_keys = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut channels = Vec::with_capacity(n);
    let mut columns: [Vec<i64>; 9] = Default::default();
    let mut value_sums = Vec::with_capacity(n);
    for ((property, hour, event_type, channel), t) in &hours {
        properties.push(*property);
        hour_keys.push(tally_hour_key(
            EventTime::from_millis(hour * HOUR_MS).to_datetime(),
        ));
        types.push(event_type.as_str());
        channels.push(*channel);
        value_sums.push(t.value_sum);
        let [r1, r2, r3, r4, r5] = t.ratings.0;
        for (column, v) in columns.iter_mut().zip([
            t.events,
            t.value_count,
            t.duration_sum,
            t.duration_count,
            r1,
            r2,
            r3,
            r4,
            r5,
        ]) {
            column.push(v);
        }
    }
    let [
        events,
        value_counts,
        duration_sums,
        duration_counts,
        r1,
        r2,
        r3,
        r4,
        r5,
    ] = columns;
    sqlx::query(
        "INSERT INTO event_tallies_hour (property_id, hour, event_type, channel, events, value_sum, \
         value_count, duration_sum, duration_count, rating_1, rating_2, rating_3, rating_4, rating_5) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                              $6::float8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], \
                              $11::int8[], $12::int8[], $13::int8[], $14::int8[]) \
         ON CONFLICT (property_id, hour, event_type, channel) DO UPDATE SET \
         events = event_tallies_hour.events + excluded.events, \
         value_sum = event_tallies_hour.value_sum + excluded.value_sum, \
         value_count = event_tallies_hour.value_count + excluded.value_count, \
         duration_sum = event_tallies_hour.duration_sum + excluded.duration_sum, \
         duration_count = event_tallies_hour.duration_count + excluded.duration_count, \
         rating_1 = event_tallies_hour.rating_1 + excluded.rating_1, \
         rating_2 = event_tallies_hour.rating_2 + excluded.rating_2, \
         rating_3 = event_tallies_hour.rating_3 + excluded.rating_3, \
         rating_4 = event_tallies_hour.rating_4 + excluded.rating_4, \
         rating_5 = event_tallies_hour.rating_5 + excluded.rating_5",
    )
    .bind(&properties)
    .bind(&hour_keys)
    .bind(&types)
    .bind(&channels)
    .bind(&events)
    .bind(&value_sums)
    .bind(&value_counts)
    .bind(&duration_sums)
    .bind(&duration_counts)
    .bind(&r1)
    .bind(&r2)
    .bind(&r3)
    .bind(&r4)
    .bind(&r5)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stamps every (property, UTC hour) that received a new event with the next change
/// sequence. The counter's row stays locked until this transaction ends, so a later
/// sequence never commits before an earlier one: an aggregator that has read up to
/// a sequence has seen every hour stamped at or below it.
async fn dirty_hours(
    tx: &mut Transaction<'_, Postgres>,
    new: &[&Event],
) -> Result<(), StorageError> {
    let hours: BTreeMap<(&str, i64), ()> = new
        .iter()
        .map(|e| {
            (
                (
                    e.property_id.as_str(),
                    e.timestamp.millis().div_euclid(HOUR_MS),
                ),
                (),
            )
        })
        .collect();
    let seq: i64 = sqlx::query_scalar(
        "UPDATE ingest_change_counter SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq",
    )
    .fetch_one(&mut **tx)
    .await?;
    let (properties, starts): (Vec<&str>, Vec<DateTime<Utc>>) = hours
        .keys()
        .map(|(p, h)| (*p, EventTime::from_millis(h * HOUR_MS).to_datetime()))
        .unzip();
    sqlx::query(
        "INSERT INTO agg_dirty_hours (property_id, hour_start, change_seq) \
         SELECT property_id, hour_start, $3 FROM UNNEST($1::text[], $2::timestamptz[]) \
              AS u(property_id, hour_start) \
         ON CONFLICT (property_id, hour_start) DO UPDATE SET change_seq = excluded.change_seq",
    )
    .bind(&properties)
    .bind(&starts)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
