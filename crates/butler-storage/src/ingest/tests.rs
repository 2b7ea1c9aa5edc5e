use butler_events::{Event, EventTime, EventType, LiveEffect, RejectReason};
use sqlx::Row;

use crate::{DeadLetterFilter, NewDeadLetter, Storage, StorageOptions};

async fn open() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("sub/analytics.db")))
        .await
        .unwrap();
    (dir, storage)
}

fn event(id: &str, event_type: EventType, at: &str) -> Event {
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    Event::new(id, event_type, EventTime::from_datetime(&at), "p1")
}

fn conversation(id: &str, event_type: EventType, at: &str, active: bool) -> Event {
    event(id, event_type, at)
        .with_conversation("c1")
        .with_live_effect(LiveEffect::Conversation { active })
}

async fn scalar_i64(storage: &Storage, sql: &'static str) -> i64 {
    sqlx::query(sql)
        .fetch_one(&storage.sqlite().sql_readers)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn opens_in_wal_mode_with_full_sync_and_every_table() {
    let (_dir, storage) = open().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&storage.sqlite().sql_writer)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&storage.sqlite().sql_writer)
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    for table in [
        "analytics_events",
        "agg_message_counts_hourly",
        "agg_response_times_hourly",
        "agg_conversation_metrics_daily",
        "agg_staff_performance_daily",
        "agg_intent_distribution_daily",
        "agg_satisfaction_weekly",
        "agg_monthly_summary",
        "analytics_dead_letters",
        "live_conversations",
        "live_staff",
        "live_tasks",
        "agg_dirty_hours",
        "ingest_change_counter",
    ] {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        )
        .bind(table)
        .fetch_one(&storage.sqlite().sql_readers)
        .await
        .unwrap();
        assert_eq!(n, 1, "{table}");
    }
}

#[tokio::test]
async fn stores_every_column_and_the_date_partition() {
    let (_dir, storage) = open().await;
    let e = Event {
        channel: Some("sms".into()),
        guest_id: Some("g".into()),
        staff_id: Some("s".into()),
        conversation_id: Some("c".into()),
        task_id: Some("t".into()),
        value: Some(0.5),
        duration_ms: Some(42),
        metadata: Some(r#"{"intent":"spa"}"#.into()),
        ..event(
            "e1",
            EventType::IntentClassified,
            "2026-11-24T23:59:59.999Z",
        )
    };
    let outcome = storage.commit_batch(&[e], &[]).await.unwrap();
    assert_eq!(outcome.inserted, [true]);
    let row = sqlx::query("SELECT * FROM analytics_events")
        .fetch_one(&storage.sqlite().sql_readers)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("id"), "e1");
    assert_eq!(row.get::<String, _>("event_type"), "intent.classified");
    assert_eq!(
        row.get::<String, _>("timestamp"),
        "2026-11-24T23:59:59.999Z"
    );
    assert_eq!(row.get::<String, _>("property_id"), "p1");
    assert_eq!(row.get::<String, _>("channel"), "sms");
    assert_eq!(row.get::<String, _>("guest_id"), "g");
    assert_eq!(row.get::<String, _>("staff_id"), "s");
    assert_eq!(row.get::<String, _>("conversation_id"), "c");
    assert_eq!(row.get::<String, _>("task_id"), "t");
    assert_eq!(row.get::<f64, _>("value"), 0.5);
    assert_eq!(row.get::<i64, _>("duration_ms"), 42);
    assert_eq!(row.get::<String, _>("metadata"), r#"{"intent":"spa"}"#);
    assert_eq!(row.get::<String, _>("date_partition"), "2026-11-24");
}

#[tokio::test]
async fn the_first_stored_event_with_an_id_wins() {
    let (_dir, storage) = open().await;
    let first = event("dup", EventType::MessageSent, "2026-11-24T10:00:00Z");
    let second = Event {
        property_id: "p2".into(),
        ..first.clone()
    };
    let outcome = storage
        .commit_batch(&[first.clone(), second.clone()], &[])
        .await
        .unwrap();
    assert_eq!(outcome.inserted, [true, false]);
    let outcome = storage.commit_batch(&[second], &[]).await.unwrap();
    assert_eq!(outcome.inserted, [false]);
    assert_eq!(
        scalar_i64(&storage, "SELECT count(*) FROM analytics_events").await,
        1
    );
    let property: String = sqlx::query_scalar("SELECT property_id FROM analytics_events")
        .fetch_one(&storage.sqlite().sql_readers)
        .await
        .unwrap();
    assert_eq!(property, "p1");
}

#[tokio::test]
async fn large_batches_span_several_statements() {
    let (_dir, storage) = open().await;
    let events: Vec<Event> = (0..1234)
        .map(|i| {
            event(
                &format!("e{i}"),
                EventType::MessageReceived,
                "2026-11-24T10:00:00Z",
            )
        })
        .collect();
    let outcome = storage.commit_batch(&events, &[]).await.unwrap();
    assert!(outcome.inserted.iter().all(|new| *new));
    assert_eq!(
        scalar_i64(&storage, "SELECT count(*) FROM analytics_events").await,
        1234
    );
    let again = storage.commit_batch(&events[1000..], &[]).await.unwrap();
    assert!(again.inserted.iter().all(|new| !*new));
}

#[tokio::test]
async fn live_state_follows_the_latest_timestamp_whatever_the_arrival_order() {
    let (_dir, storage) = open().await;
    let resolved = conversation(
        "e2",
        EventType::ConversationResolved,
        "2026-11-24T10:05:00Z",
        false,
    );
    let started = conversation(
        "e1",
        EventType::ConversationStarted,
        "2026-11-24T10:00:00Z",
        true,
    );
    storage.commit_batch(&[resolved], &[]).await.unwrap();
    storage.commit_batch(&[started], &[]).await.unwrap();
    let active = scalar_i64(&storage, "SELECT active FROM live_conversations").await;
    assert_eq!(
        active, 0,
        "the later resolution wins over the earlier start"
    );

    let completed = Event {
        task_id: Some("t1".into()),
        live_effect: Some(LiveEffect::TaskCompleted),
        ..event("t-done", EventType::TaskCompleted, "2026-11-24T11:00:00Z")
    };
    let created = Event {
        task_id: Some("t1".into()),
        live_effect: Some(LiveEffect::TaskCreated),
        ..event("t-new", EventType::TaskCreated, "2026-11-24T10:00:00Z")
    };
    storage
        .commit_batch(&[completed, created], &[])
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&storage, "SELECT created + completed FROM live_tasks").await,
        2
    );
}

#[tokio::test]
async fn a_duplicate_id_does_not_touch_live_state() {
    let (_dir, storage) = open().await;
    let started = conversation(
        "e1",
        EventType::ConversationStarted,
        "2026-11-24T10:00:00Z",
        true,
    );
    let imposter = conversation(
        "e1",
        EventType::ConversationClosed,
        "2026-11-24T12:00:00Z",
        false,
    );
    storage.commit_batch(&[started], &[]).await.unwrap();
    storage.commit_batch(&[imposter], &[]).await.unwrap();
    assert_eq!(
        scalar_i64(&storage, "SELECT active FROM live_conversations").await,
        1
    );
}

#[tokio::test]
async fn new_events_mark_their_hours_dirty_with_a_rising_sequence() {
    let (_dir, storage) = open().await;
    let a = event("a", EventType::MessageSent, "2026-11-24T10:59:59.999Z");
    let b = event("b", EventType::MessageSent, "2026-11-24T10:00:00Z");
    let c = event("c", EventType::MessageSent, "2026-11-24T11:00:00Z");
    storage.commit_batch(&[a.clone(), b], &[]).await.unwrap();
    storage.commit_batch(&[c], &[]).await.unwrap();
    storage.commit_batch(&[a], &[]).await.unwrap(); // a duplicate marks nothing
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT hour_start, change_seq FROM agg_dirty_hours ORDER BY hour_start")
            .fetch_all(&storage.sqlite().sql_readers)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("2026-11-24T10:00:00Z".to_owned(), 1),
            ("2026-11-24T11:00:00Z".to_owned(), 2)
        ]
    );
}

#[tokio::test]
async fn a_redelivered_rejection_is_kept_once() {
    let (_dir, storage) = open().await;
    let dl = NewDeadLetter {
        subject: "butler.events.message.sent".into(),
        stream: "BUTLER_EVENTS".into(),
        stream_sequence: 7,
        published_at: None,
        payload: b"{not json\xff".to_vec(),
        headers_json: "{}".into(),
        reason: RejectReason::InvalidJson,
        detail: "payload is not valid JSON".into(),
    };
    assert_eq!(
        storage
            .commit_batch(&[], std::slice::from_ref(&dl))
            .await
            .unwrap()
            .dead_letters_inserted,
        [true]
    );
    assert_eq!(
        storage
            .commit_batch(&[], &[dl])
            .await
            .unwrap()
            .dead_letters_inserted,
        [false]
    );
    let listed = storage
        .list_dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].payload, b"{not json\xff");
    assert_eq!(listed[0].reason, "invalid_json");
}

#[tokio::test]
async fn replay_stores_fixed_letters_and_updates_the_rest() {
    let (_dir, storage) = open().await;
    let dl = |seq| NewDeadLetter {
        subject: "butler.events.message.sent".into(),
        stream: "BUTLER_EVENTS".into(),
        stream_sequence: seq,
        published_at: None,
        payload: br#"{"propertyId":"p1","channel":"fax"}"#.to_vec(),
        headers_json: "{}".into(),
        reason: RejectReason::InvalidChannel,
        detail: "fax".into(),
    };
    storage.commit_batch(&[], &[dl(1), dl(2)]).await.unwrap();
    let listed = storage
        .list_dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    let fixed = event(
        "evt_BUTLER_EVENTS_1",
        EventType::MessageSent,
        "2026-11-24T10:00:00Z",
    );
    let outcome = storage
        .commit_replay(
            &[(listed[0].id, fixed)],
            &[(listed[1].id, RejectReason::Expired, "old".into())],
        )
        .await
        .unwrap();
    assert_eq!(outcome.stored, 1);
    assert_eq!(outcome.still_rejected, 1);
    let pending = storage
        .list_dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].reason, "expired");
    let all = storage
        .list_dead_letters(&DeadLetterFilter {
            include_replayed: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all[0].replayed_event_id.as_deref(),
        Some("evt_BUTLER_EVENTS_1")
    );
    assert_eq!(
        scalar_i64(&storage, "SELECT count(*) FROM analytics_events").await,
        1
    );
}

/// Commit cost of realistic batches, printed; run with
/// `cargo test --release -p butler-storage commit_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn commit_cost() {
    let (_dir, storage) = open().await;
    let types = [
        (EventType::MessageReceived, None),
        (EventType::MessageSent, None),
        (EventType::MessageDelivered, None),
        (EventType::ConversationStarted, Some(true)),
        (EventType::ConversationResolved, Some(false)),
        (EventType::ResponseTimeRecorded, None),
        (EventType::TaskCreated, None),
        (EventType::IntentClassified, None),
    ];
    let mut rng = butler_events::testing::Xorshift::new(0x9E37_79B9_7F4A_7C15);
    let mut next = || rng.next_u64();
    let base = 1_764_000_000_000i64;
    let events: Vec<Event> = (0..200_000u64)
        .map(|i| {
            let (t, active) = types[(next() % 8) as usize];
            let mut e = event(
                &format!("evt_{:013x}_{i:08x}", base + i as i64 * 400),
                t,
                "2026-11-24T00:00:00Z",
            );
            e.timestamp = EventTime::from_millis(base + i as i64 * 400);
            e.property_id = format!("prop_{:03}", next() % 20);
            e.channel = Some("whatsapp".into());
            // Events belong to the few hundred conversations open at the time.
            e.conversation_id = Some(format!("conv_{:010}", i / 8 + next() % 300));
            e.guest_id = Some(format!("guest_{}", next() % 20_000));
            e.metadata = Some(r#"{"lang":"en","length":120}"#.into());
            e.live_effect = active.map(|active| LiveEffect::Conversation { active });
            if t == EventType::ResponseTimeRecorded {
                e.duration_ms = Some(4200);
            }
            e
        })
        .collect();
    let started = std::time::Instant::now();
    for batch in events.chunks(1000) {
        storage.commit_batch(batch, &[]).await.unwrap();
    }
    let took = started.elapsed();
    println!(
        "{} events in {:?}: {:.2} ms per 1000, {:.0} events/s",
        events.len(),
        took,
        took.as_secs_f64() * 1000.0 / 200.0,
        events.len() as f64 / took.as_secs_f64()
    );
}
