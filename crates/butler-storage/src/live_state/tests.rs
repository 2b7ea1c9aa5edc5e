//! Pruning never changes what the dashboard counts, on either backend: random
//! lifecycle, staff and task events arrive out of order, late, and between prunes,
//! and after every batch the counts equal those worked out from every event.

use std::collections::HashMap;

use butler_events::testing::Xorshift;
use butler_events::{Event, EventTime, EventType, LiveEffect};
use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::queries::LiveCounts;
use crate::testing::TempPostgres;
use crate::{Storage, StorageOptions};

const DAY: i64 = 86_400_000;

fn start() -> i64 {
    DateTime::parse_from_rfc3339("2026-09-01T00:00:00Z")
        .unwrap()
        .timestamp_millis()
}

/// An event of property `p0` or `p1` on key `k<n>` of its kind, at `at`.
fn live_event(rng: &mut Xorshift, i: u64, at: i64, keys: u64) -> Event {
    let property = format!("p{}", rng.below(2));
    let key = format!("k{}", rng.below(keys));
    let time = EventTime::from_millis(at);
    let id = format!("e{i}");
    let conversation = |t, active| {
        Event::new(id.clone(), t, time, property.clone())
            .with_conversation(&key)
            .with_live_effect(LiveEffect::Conversation { active })
    };
    let staff = |t, online| {
        Event::new(id.clone(), t, time, property.clone())
            .with_staff(&key)
            .with_live_effect(LiveEffect::Staff { online })
    };
    let task = |t, effect| {
        Event::new(id.clone(), t, time, property.clone())
            .with_task(&key)
            .with_live_effect(effect)
    };
    match rng.below(9) {
        0 => conversation(EventType::ConversationStarted, true),
        1 => conversation(EventType::ConversationEscalated, true),
        2 => conversation(EventType::ConversationResolved, false),
        3 => conversation(EventType::ConversationClosed, false),
        4 => staff(EventType::StaffLogin, true),
        5 => staff(EventType::StaffLogout, false),
        6 => {
            let available = rng.below(2) == 0;
            let status = if available { "available" } else { "busy" };
            staff(EventType::StaffStatusChanged, available)
                .with_metadata(&format!("{{\"status\":\"{status}\"}}"))
        }
        7 => task(EventType::TaskCreated, LiveEffect::TaskCreated),
        _ => task(EventType::TaskCompleted, LiveEffect::TaskCompleted),
    }
}

/// The counts of one property from every event ever stored, by the contract's rules.
fn expected(events: &[Event], property: &str) -> LiveCounts {
    let mut latest: HashMap<(LiveTable, &str), (EventTime, &str, bool)> = HashMap::new();
    let mut tasks: HashMap<&str, (bool, bool)> = HashMap::new();
    for e in events.iter().filter(|e| e.property_id == property) {
        let (table, key, flag) = match e.live_effect {
            Some(LiveEffect::Conversation { active }) => (
                LiveTable::Conversations,
                e.conversation_id.as_deref(),
                active,
            ),
            Some(LiveEffect::Staff { online }) => (LiveTable::Staff, e.staff_id.as_deref(), online),
            Some(effect) => {
                let task = tasks.entry(e.task_id.as_deref().unwrap()).or_default();
                task.0 |= effect == LiveEffect::TaskCreated;
                task.1 |= effect == LiveEffect::TaskCompleted;
                continue;
            }
            None => continue,
        };
        let now = (e.timestamp, e.id.as_str(), flag);
        let entry = latest.entry((table, key.unwrap())).or_insert(now);
        if (now.0, now.1) > (entry.0, entry.1) {
            *entry = now;
        }
    }
    let count = |table| {
        latest
            .iter()
            .filter(|((t, _), (_, _, flag))| *t == table && *flag)
            .count() as i64
    };
    LiveCounts {
        active_conversations: count(LiveTable::Conversations),
        staff_online: count(LiveTable::Staff),
        pending_tasks: tasks.values().filter(|(c, d)| *c && !*d).count() as i64,
    }
}

/// Prunes every table with `cutoff`, in windows of `window` keys; rows deleted and
/// windows run.
async fn prune(storage: &Storage, cutoff: DateTime<Utc>, window: u32) -> (u64, u64) {
    let (mut deleted, mut windows) = (0, 0);
    for table in LiveTable::ALL {
        let mut after = None;
        loop {
            let step = storage
                .prune_live_state(table, cutoff, after.as_ref(), window)
                .await
                .unwrap();
            deleted += step.deleted;
            windows += 1;
            match step.next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
    }
    (deleted, windows)
}

/// Rows left in the live-state tables: a prune that deletes nothing (cutoff at the
/// epoch) with windows of one key counts them.
async fn rows_left(storage: &Storage) -> u64 {
    let (deleted, windows) = prune(storage, DateTime::<Utc>::UNIX_EPOCH, 1).await;
    assert_eq!(deleted, 0);
    // Each table's last window is the empty one after its last key.
    windows - LiveTable::ALL.len() as u64
}

async fn counts_stay_exact(storage: &Storage) {
    let mut rng = Xorshift::new(0x11FE);
    let mut stored: Vec<Event> = Vec::new();
    let mut pruned = 0;
    let mut i = 0;
    // Sixty days; each day a batch of events up to 40 days late, then a prune with a
    // seven-day retention.
    for day in 0..60 {
        let now = start() + day * DAY;
        let batch: Vec<Event> = (0..120)
            .map(|_| {
                i += 1;
                let late = match rng.below(10) {
                    0..=5 => rng.below(DAY as u64) as i64,
                    6..=8 => rng.below(10 * DAY as u64) as i64,
                    _ => rng.below(40 * DAY as u64) as i64,
                };
                live_event(&mut rng, i, now - late, 60)
            })
            .collect();
        storage.commit_batch(&batch, &[]).await.unwrap();
        stored.extend(batch);
        for property in ["p0", "p1"] {
            assert_eq!(
                storage.live_counts(property).await.unwrap(),
                expected(&stored, property),
                "{property} on day {day}"
            );
        }
        let cutoff = DateTime::from_timestamp_millis(now).unwrap() - Duration::days(7);
        pruned += prune(storage, cutoff, 50).await.0;
    }
    assert!(pruned > 200, "pruning deleted {pruned} rows");
    let left = rows_left(storage).await;
    assert!(left < 3 * 2 * 60, "{left} rows left of at most 360 keys");
}

#[tokio::test]
async fn pruning_keeps_every_count_exact_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    counts_stay_exact(&storage).await;
}

#[tokio::test]
async fn pruning_keeps_every_count_exact_on_postgres() {
    let db = TempPostgres::create().await;
    let storage = Storage::open(&db.options()).await.unwrap();
    counts_stay_exact(&storage).await;
}

/// A pruned conversation's late event, older than its resolution, leaves it resolved;
/// a pruned completed task's new creation leaves it done. Both backends.
#[tokio::test]
async fn a_late_event_of_a_pruned_key_does_not_bring_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let db = TempPostgres::create().await;
    let postgres = Storage::open(&db.options()).await.unwrap();
    let at = |d: i64| EventTime::from_millis(start() + d * DAY);
    for storage in [&sqlite, &postgres] {
        let first = [
            Event::new("s", EventType::ConversationStarted, at(0), "p")
                .with_conversation("c")
                .with_live_effect(LiveEffect::Conversation { active: true }),
            Event::new("r", EventType::ConversationResolved, at(2), "p")
                .with_conversation("c")
                .with_live_effect(LiveEffect::Conversation { active: false }),
            Event::new("d", EventType::TaskCompleted, at(1), "p")
                .with_task("t")
                .with_live_effect(LiveEffect::TaskCompleted),
        ];
        storage.commit_batch(&first, &[]).await.unwrap();
        assert_eq!(prune(storage, at(10).to_datetime(), 50).await.0, 2);
        assert_eq!(rows_left(storage).await, 0);
        let late = [
            Event::new("x", EventType::ConversationEscalated, at(1), "p")
                .with_conversation("c")
                .with_live_effect(LiveEffect::Conversation { active: true }),
            Event::new("n", EventType::TaskCreated, at(20), "p")
                .with_task("t")
                .with_live_effect(LiveEffect::TaskCreated),
        ];
        storage.commit_batch(&late, &[]).await.unwrap();
        assert_eq!(
            storage.live_counts("p").await.unwrap(),
            LiveCounts::default(),
            "nothing active, nothing pending"
        );
    }
}

/// The rebuild reads go through the partial indexes: their WHERE clauses are word for
/// word those of the migration.
#[tokio::test]
async fn rebuilding_a_key_reads_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    for (table, index) in [
        (LiveTable::Conversations, "idx_events_live_conversation"),
        (LiveTable::Staff, "idx_events_live_staff"),
        (LiveTable::Tasks, "idx_events_live_task"),
    ] {
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN SELECT id FROM analytics_events WHERE property_id = 'p' \
             AND {} = 'k' AND {}",
            table.key_column(),
            table.event_types_clause()
        )))
        .fetch_all(&storage.sqlite().sql_readers)
        .await
        .unwrap();
        assert!(
            plan.iter().any(|row| row.3.contains(index)),
            "{}: {plan:?}",
            table.name()
        );
    }
}

/// Each table's rebuild reads exactly the event types that can finish one of its
/// keys, as ingest derives effects from types (a status change without `available`
/// takes a staff member offline).
#[test]
fn each_table_reads_back_the_types_that_finish_its_keys() {
    for t in EventType::ALL {
        let effect = Event::new("i", t, EventTime::from_millis(0), "p")
            .with_conversation("c")
            .with_staff("s")
            .with_task("t")
            .with_stored_live_effect()
            .live_effect;
        let finishes = match effect {
            Some(LiveEffect::Conversation { active }) => Some((LiveTable::Conversations, !active)),
            Some(LiveEffect::Staff { online }) => Some((LiveTable::Staff, !online)),
            Some(LiveEffect::TaskCompleted) => Some((LiveTable::Tasks, true)),
            Some(LiveEffect::TaskCreated) => Some((LiveTable::Tasks, false)),
            None => None,
        };
        for table in LiveTable::ALL {
            let listed = table
                .event_types_clause()
                .contains(&format!("'{}'", t.as_str()));
            assert_eq!(
                listed,
                finishes == Some((table, true)),
                "{t:?} in {}",
                table.name()
            );
        }
    }
}
