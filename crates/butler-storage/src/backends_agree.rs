//! The PostgreSQL backend against the SQLite one: the same operations on the same
//! data give the same answers. SQLite's answers are held to the contract by the rest
//! of the suite; this holds PostgreSQL to SQLite's.

use std::collections::BTreeSet;

use butler_events::testing::Xorshift;
use butler_events::{Event, EventTime, EventType, Granularity, LiveEffect, RejectReason};
use chrono::{DateTime, Utc};

use crate::aggregation::{JobRunRecord, PendingBucket};
use crate::queries::SeriesQuery;
use crate::retention::RetentionClass;
use crate::tables::{AGG_TABLES, BucketRows, Cell, Kind};
use crate::testing::TempPostgres;
use crate::{DeadLetterFilter, NewDeadLetter, Storage, StorageOptions};

const HOUR: i64 = 3_600_000;

/// An instant written as text.
fn at(text: &str) -> EventTime {
    crate::sql::parse_time(text).expect("an instant")
}

fn base() -> i64 {
    DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z")
        .unwrap()
        .timestamp_millis()
}

const TYPES: [EventType; 14] = [
    EventType::ConversationStarted,
    EventType::ConversationResolved,
    EventType::ConversationEscalated,
    EventType::ConversationClosed,
    EventType::MessageReceived,
    EventType::MessageSent,
    EventType::ResponseTimeRecorded,
    EventType::TaskCreated,
    EventType::TaskCompleted,
    EventType::SatisfactionSurveySent,
    EventType::SatisfactionRatingReceived,
    EventType::IntentClassified,
    EventType::StaffLogin,
    EventType::StaffLogout,
];

/// Events over three days of three properties, with repeated ids, out-of-order live
/// state and every tallied type.
fn events(rng: &mut Xorshift, n: u64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let t = TYPES[rng.below(TYPES.len() as u64) as usize];
            let id = format!("e{}", if i % 37 == 5 { i - 1 } else { i });
            let at = EventTime::from_millis(base() + rng.below(72 * HOUR as u64) as i64);
            let property = ["p0", "p1", "p2", "P_3", "p-4"][rng.below(5) as usize];
            let mut e = Event::new(id, t, at, property);
            let channels = [
                None,
                Some("sms"),
                Some("whatsapp"),
                Some("web_chat"),
                Some("webchat"),
            ];
            e.channel = channels[rng.below(5) as usize].map(str::to_owned);
            let conversation = format!("c{}", rng.below(40));
            let staff = format!("s{}", rng.below(5));
            let task = format!("t{}", rng.below(30));
            match t {
                EventType::ConversationStarted | EventType::ConversationEscalated => {
                    e = e
                        .with_conversation(&conversation)
                        .with_live_effect(LiveEffect::Conversation { active: true });
                }
                EventType::ConversationResolved | EventType::ConversationClosed => {
                    e = e
                        .with_conversation(&conversation)
                        .with_live_effect(LiveEffect::Conversation { active: false });
                }
                EventType::StaffLogin | EventType::StaffLogout => {
                    e = e.with_staff(&staff).with_live_effect(LiveEffect::Staff {
                        online: t == EventType::StaffLogin,
                    });
                }
                EventType::TaskCreated => {
                    e = e.with_task(&task).with_live_effect(LiveEffect::TaskCreated);
                }
                EventType::TaskCompleted => {
                    e = e
                        .with_task(&task)
                        .with_live_effect(LiveEffect::TaskCompleted);
                }
                EventType::ResponseTimeRecorded => {
                    e = e
                        .with_conversation(&conversation)
                        .with_duration_ms(rng.below(600_000) as i64);
                }
                EventType::SatisfactionRatingReceived => {
                    e = e.with_value((1 + rng.below(5)) as f64);
                }
                EventType::IntentClassified => {
                    e = e
                        .with_value(rng.below(100) as f64 / 100.0)
                        .with_metadata(r#"{"intent":"spa"}"#);
                }
                _ => {}
            }
            e
        })
        .collect()
}

fn dead_letter(seq: u64) -> NewDeadLetter {
    NewDeadLetter {
        subject: "butler.events.nope".into(),
        stream: "BUTLER_EVENTS".into(),
        stream_sequence: seq,
        published_at: Some(EventTime::from_millis(base() + seq as i64)),
        payload: vec![0xff, b'{', seq as u8],
        headers_json: r#"{"Nats-Msg-Id":["x"]}"#.into(),
        reason: RejectReason::UnknownEventType,
        detail: "subject butler.events.nope does not name one of the 25 event types".into(),
    }
}

/// A row of `table` for `key`, its values drawn from `rng`.
fn row(
    rng: &mut Xorshift,
    table: &'static crate::tables::AggTable,
    key: &str,
    dim: &str,
) -> Vec<Cell> {
    let mut cells = vec![Cell::Text(key.into()), Cell::Text("p1".into())];
    cells.extend(table.dimensions.iter().map(|_| Cell::Text(dim.into())));
    // Counts are never null; averages and percentiles sometimes are.
    cells.extend(table.measures.iter().map(|m| match m.kind {
        Kind::Integer if m.combine == crate::tables::Combine::Sum => {
            Cell::Integer(Some(rng.below(500) as i64))
        }
        Kind::Integer => Cell::Integer((rng.below(5) > 0).then(|| rng.below(500) as i64)),
        Kind::Real => Cell::Real((rng.below(5) > 0).then(|| rng.below(10_000) as f64 / 100.0)),
        Kind::Json => Cell::Text(r#"{"sms": 1}"#.into()),
    }));
    cells
}

fn keys(granularity: Granularity) -> Vec<String> {
    let start = DateTime::from_timestamp_millis(base()).unwrap();
    let g = granularity;
    g.buckets_overlapping(chrono_tz::UTC, start, start + chrono::Duration::days(200))
        .into_iter()
        .take(6)
        .map(|b| b.key)
        .collect()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        (a, b) => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_as_sqlite_does() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    // A collation that orders text otherwise than SQLite does (byte by byte), as
    // many servers' en_US.UTF-8 does: replies must still come in the same order.
    let pg_db = TempPostgres::create_with(
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
    )
    .await;
    let postgres = Storage::open(&pg_db.options()).await.unwrap();
    let both = [&sqlite, &postgres];

    // Ingest: the same batches, a redelivered one among them.
    let mut rng = Xorshift::new(0xB0B);
    let evs = events(&mut rng, 3_000);
    let mut outcomes = [Vec::new(), Vec::new()];
    for (i, storage) in both.iter().enumerate() {
        for (n, batch) in evs.chunks(400).enumerate() {
            let letters: Vec<NewDeadLetter> =
                (0..3).map(|k| dead_letter(n as u64 * 2 + k)).collect();
            outcomes[i].push(storage.commit_batch(batch, &letters).await.unwrap());
        }
        outcomes[i].push(storage.commit_batch(&evs[..400], &[]).await.unwrap());
    }
    let rows = |outcomes: &[crate::BatchOutcome]| -> Vec<(Vec<bool>, Vec<bool>)> {
        outcomes
            .iter()
            .map(|o| (o.inserted.clone(), o.dead_letters_inserted.clone()))
            .collect()
    };
    assert_eq!(
        rows(&outcomes[0]),
        rows(&outcomes[1]),
        "the same rows are new on both"
    );

    // Reads over what ingest wrote.
    for property in ["p0", "p1", "p2", "P_3", "p-4", "nobody"] {
        assert_eq!(
            sqlite.live_counts(property).await.unwrap(),
            postgres.live_counts(property).await.unwrap(),
            "live counts of {property}"
        );
        for (from, to) in [
            (0, 72 * HOUR),
            (HOUR / 3, 50 * HOUR + 77_777),
            (5 * HOUR + 1_000, 5 * HOUR + 900_000),
            (10 * HOUR, 34 * HOUR),
        ] {
            let (from, to) = (
                EventTime::from_millis(base() + from),
                EventTime::from_millis(base() + to),
            );
            assert_eq!(
                sqlite.tallies(property, from, to).await.unwrap(),
                postgres.tallies(property, from, to).await.unwrap(),
                "tallies of {property} [{from}, {to})"
            );
            assert_eq!(
                sqlite.resolution_counts(property, from, to).await.unwrap(),
                postgres
                    .resolution_counts(property, from, to)
                    .await
                    .unwrap()
            );
            let mut a = sqlite
                .fetch_agg_events(property, from, to, &TYPES)
                .await
                .unwrap();
            let mut b = postgres
                .fetch_agg_events(property, from, to, &TYPES)
                .await
                .unwrap();
            a.sort_by(|x, y| x.id.cmp(&y.id));
            b.sort_by(|x, y| x.id.cmp(&y.id));
            assert_eq!(a, b, "a bucket's events of {property}");
        }
        let ids: Vec<String> = (0..40).map(|c| format!("c{c}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(
            sqlite
                .earliest_conversation_starts(property, &ids)
                .await
                .unwrap(),
            postgres
                .earliest_conversation_starts(property, &ids)
                .await
                .unwrap()
        );
        let mut someone_online = false;
        for hour in [5, 30, 71] {
            let instant = EventTime::from_millis(base() + hour * HOUR);
            let online = sqlite.staff_online_at(property, instant).await.unwrap();
            someone_online |= !online.is_empty();
            assert_eq!(
                online,
                postgres.staff_online_at(property, instant).await.unwrap(),
                "staff of {property} online at {instant}"
            );
        }
        assert_eq!(someone_online, property != "nobody", "{property}");
        let tasks: Vec<String> = (0..30).map(|t| format!("t{t}")).collect();
        let tasks: Vec<&str> = tasks.iter().map(String::as_str).collect();
        let created = sqlite
            .earliest_task_creations(property, &tasks)
            .await
            .unwrap();
        assert_eq!(
            created.is_empty(),
            property == "nobody",
            "tasks created at {property}"
        );
        assert_eq!(
            created,
            postgres
                .earliest_task_creations(property, &tasks)
                .await
                .unwrap()
        );
    }
    let dirty = |(mut hours, seq): (Vec<(String, String)>, i64)| {
        hours.sort();
        (hours, seq)
    };
    assert_eq!(
        dirty(sqlite.dirty_hours_after(2).await.unwrap()),
        dirty(postgres.dirty_hours_after(2).await.unwrap())
    );
    let (start, end) = (
        DateTime::from_timestamp_millis(base() + 20 * HOUR).unwrap(),
        DateTime::from_timestamp_millis(base() + 30 * HOUR).unwrap(),
    );
    assert_eq!(
        sqlite.properties_with_events(start, end).await.unwrap(),
        postgres.properties_with_events(start, end).await.unwrap()
    );
    let filter = DeadLetterFilter {
        include_replayed: true,
        ..DeadLetterFilter::default()
    };
    let (a, b) = (
        sqlite.list_dead_letters(&filter).await.unwrap(),
        postgres.list_dead_letters(&filter).await.unwrap(),
    );
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), 17, "sequences 0 to 16, each kept once");
    for (x, y) in a.iter().zip(&b) {
        let parsed = |h: &str| serde_json::from_str::<serde_json::Value>(h).unwrap();
        assert_eq!(
            (
                x.id,
                &x.subject,
                x.stream_sequence,
                &x.published_at,
                &x.payload,
                &x.reason
            ),
            (
                y.id,
                &y.subject,
                y.stream_sequence,
                &y.published_at,
                &y.payload,
                &y.reason
            )
        );
        assert_eq!(parsed(&x.headers_json), parsed(&y.headers_json));
    }

    // Aggregate rows: the same buckets written, the same series read back.
    let now = at("2027-01-01T00:00:00.000Z");
    for table in AGG_TABLES {
        let mut rng = Xorshift::new(0xA66 + table.name.len() as u64);
        let mut written = Vec::new();
        for key in keys(table.granularity) {
            // Values a collation may order otherwise than bytes do.
            let dims = [
                "sms", "whatsapp", "unknown", "wa_2", "wa1", "Zed", "a-b", "ab",
            ];
            let rows: Vec<Vec<Cell>> = if table.dimensions.is_empty() {
                vec![row(&mut rng, table, &key, "")]
            } else {
                dims.iter().map(|d| row(&mut rng, table, &key, d)).collect()
            };
            let bucket = PendingBucket {
                property_id: "p1".into(),
                period_key: key.clone(),
                start: at("2026-11-20T00:00:00.000Z"),
                end: at("2026-11-21T00:00:00.000Z"),
            };
            let rows = BucketRows { table, rows };
            written.push(rows.clone());
            for storage in both {
                storage
                    .replace_buckets(table.job, &[(bucket.clone(), rows.clone())], now, None)
                    .await
                    .unwrap();
            }
        }
        let all = keys(table.granularity);
        let (from, to) = match table.granularity {
            Granularity::Month => (format!("{}-01", all[1]), format!("{}-01", all[4])),
            _ => (all[1].clone(), all[4].clone()),
        };
        for measure in table.metrics() {
            let dims: Vec<&[&str]> = if table.dimensions.is_empty() {
                vec![&[]]
            } else {
                vec![&[], table.dimensions]
            };
            for dimensions in dims {
                for per_period in [true, false] {
                    let q = SeriesQuery {
                        table,
                        measure,
                        dimensions,
                        property_id: "p1",
                        from_key: &from,
                        to_key: &to,
                        per_period,
                    };
                    let a = sqlite.series(&q).await.unwrap().unwrap();
                    let b = postgres.series(&q).await.unwrap().unwrap();
                    if per_period {
                        // Rows not stored combine as the stored ones do.
                        let c: Vec<_> = written[1..4]
                            .iter()
                            .flat_map(|rows| q.points_of(rows).unwrap())
                            .collect();
                        assert_eq!(a.len(), c.len(), "{}.{}", table.name, measure.column);
                        for (x, z) in a.iter().zip(&c) {
                            assert_eq!((&x.period, &x.dimensions), (&z.period, &z.dimensions));
                            assert!(
                                close(x.value, z.value),
                                "unstored {}.{} {x:?} {z:?}",
                                table.name,
                                measure.column
                            );
                        }
                    }
                    assert_eq!(a.len(), b.len(), "{}.{}", table.name, measure.column);
                    assert!(!a.is_empty(), "{}.{}", table.name, measure.column);
                    for (x, y) in a.iter().zip(&b) {
                        assert_eq!((&x.period, &x.dimensions), (&y.period, &y.dimensions));
                        assert!(
                            close(x.value, y.value),
                            "{}.{} {x:?} {y:?}",
                            table.name,
                            measure.column
                        );
                    }
                }
            }
        }
    }

    // Job bookkeeping.
    let pending: Vec<PendingBucket> = (0..4)
        .map(|i| PendingBucket {
            property_id: format!("p{i}"),
            period_key: format!("2026-11-2{i}"),
            start: at(&format!("2026-11-2{i}T00:00:00.000Z")),
            end: at(&format!("2026-11-2{}T00:00:00.000Z", i + 1)),
        })
        .collect();
    for storage in both {
        storage
            .enqueue_buckets("daily_staff_performance", &pending, Some(7), None)
            .await
            .unwrap();
        storage
            .record_job_run(&JobRunRecord {
                job: "daily_staff_performance".into(),
                trigger: "cli".into(),
                started_at: at("2026-11-24T00:00:00.000Z"),
                finished_at: at("2026-11-24T00:00:01.250Z"),
                periods_recomputed: 3,
                rows_written: 9,
                duration_ms: 1250,
                error: None,
            })
            .await
            .unwrap();
    }
    for storage in both {
        // Closed by 11-23: the buckets ending on the 21st, 22nd and 23rd, in order.
        let closed = storage
            .closed_pending_buckets("daily_staff_performance", at("2026-11-23T00:00:00.000Z"))
            .await
            .unwrap();
        assert_eq!(closed, pending[..3]);
        let staff = storage.job_statuses().await.unwrap();
        let staff = staff
            .iter()
            .find(|j| j.job == "daily_staff_performance")
            .unwrap();
        assert_eq!(
            staff.last_run_at.as_deref(),
            Some("2026-11-24T00:00:01.250Z")
        );
        assert_eq!(staff.last_success_at, staff.last_run_at);
        assert_eq!(staff.pending_buckets, 4);
        assert_eq!(
            storage
                .job_dirty_seq("daily_staff_performance")
                .await
                .unwrap(),
            7
        );
    }
    let status = |s: Vec<crate::aggregation::JobStatus>| -> Vec<String> {
        s.iter().map(|j| format!("{j:?}")).collect()
    };
    assert_eq!(
        status(sqlite.job_statuses().await.unwrap()),
        status(postgres.job_statuses().await.unwrap())
    );
    assert_eq!(
        sqlite
            .job_dirty_seq("daily_staff_performance")
            .await
            .unwrap(),
        postgres
            .job_dirty_seq("daily_staff_performance")
            .await
            .unwrap()
    );

    // Retention: the same rows go.
    let cutoff = DateTime::<Utc>::from_timestamp_millis(base() + 30 * HOUR + 1_234).unwrap();
    let mut deleted = Vec::new();
    for storage in both {
        let mut all = BTreeSet::new();
        for class in [
            RetentionClass::RawEvents,
            RetentionClass::Aggregates(Granularity::Hour),
            RetentionClass::Aggregates(Granularity::Day),
            RetentionClass::Aggregates(Granularity::Week),
            RetentionClass::Aggregates(Granularity::Month),
        ] {
            all.extend(
                storage
                    .delete_expired_chunk(class, cutoff, 100_000)
                    .await
                    .unwrap(),
            );
        }
        deleted.push(all);
    }
    assert_eq!(deleted[0], deleted[1]);
    assert!(
        deleted[0]
            .iter()
            .any(|(t, n)| *t == "analytics_events" && *n > 0)
    );
    for property in ["p0", "p1", "p2"] {
        let (from, to) = (
            EventTime::from_millis(base()),
            EventTime::from_millis(base() + 72 * HOUR),
        );
        assert_eq!(
            sqlite.tallies(property, from, to).await.unwrap(),
            postgres.tallies(property, from, to).await.unwrap(),
            "tallies after retention"
        );
    }
    sqlite.close().await;
    postgres.close().await;
}
