//! Valid events end to end: stored exactly as CONTRACT §1 says, once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{App, NatsServer, message_event, publish_all, samples, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// The stored form, computed here with chrono rather than by the code under test.
fn expected_timestamp(rfc3339: &str) -> String {
    let t = DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc);
    let millis = t.timestamp_millis();
    DateTime::from_timestamp_millis(millis)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_events_of_every_type_are_stored_exactly_as_published() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "retention:\n  raw_events: 36500\n");
    let js = nats.jetstream().await;
    let stored: Vec<_> = samples()
        .into_iter()
        .filter(|(_, _, expect)| expect == "stored")
        .collect();
    assert_eq!(stored.len(), 27);
    let before = Utc::now();
    let seqs = publish_all(
        &js,
        stored
            .iter()
            .map(|(s, p, _)| (s.clone(), p.clone()))
            .collect(),
    )
    .await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "publisher-id-1");
    js.publish_with_headers(
        "butler.events.message.sent",
        headers,
        r#"{"propertyId":"p_h"}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let after = Utc::now();
    wait_until(WAIT, "28 stored events", || async {
        app.event_count().await == 28
    })
    .await;

    let db = app.db().await;
    for ((subject, payload, _), seq) in stored.iter().zip(&seqs) {
        let p: Value = serde_json::from_slice(payload).unwrap();
        let id = p["id"]
            .as_str()
            .map_or_else(|| format!("evt_BUTLER_EVENTS_{seq}"), str::to_owned);
        let rows = db
            .records(&format!("SELECT * FROM analytics_events WHERE id = '{id}'"))
            .await;
        let row = rows.first().unwrap_or_else(|| panic!("{id} stored"));
        let event_type = subject.strip_prefix("butler.events.").unwrap();
        assert_eq!(row["event_type"], event_type, "{id}");
        assert_eq!(row["property_id"], p["propertyId"], "{id}");
        let ts = row["timestamp"].as_str().unwrap().to_owned();
        match p["timestamp"].as_str() {
            Some(published) => assert_eq!(ts, expected_timestamp(published), "{id}"),
            None => {
                let t: DateTime<Utc> = ts.parse().unwrap();
                assert!(
                    ts.len() == 24 && t >= before - chrono::Duration::milliseconds(1) && t <= after,
                    "{id}: {ts}"
                );
            }
        }
        assert_eq!(row["date_partition"], ts[..10], "{id}");
        let text = |col: &str, field: &str| {
            assert_eq!(row[col].as_str(), p[field].as_str(), "{id} {col}");
        };
        text("channel", "channel");
        text("guest_id", "guestId");
        text("staff_id", "staffId");
        text("conversation_id", "conversationId");
        text("task_id", "taskId");
        assert_eq!(row["value"].as_f64(), p["value"].as_f64(), "{id}");
        assert_eq!(
            row["duration_ms"].as_i64(),
            p["durationMs"].as_i64(),
            "{id}"
        );
        let metadata = Some(&row["metadata"]).filter(|m| !m.is_null());
        assert_eq!(metadata, p.get("metadata"), "{id}");
    }
    // The design's notes on the samples, spelled out.
    let ts = |id: &'static str| {
        let db = &db;
        async move {
            db.strings(&format!(
                "SELECT \"timestamp\" FROM analytics_events WHERE id = '{id}'"
            ))
            .await
            .remove(0)
        }
    };
    // Sample dates move with the calendar (`samples`): 2026-11-24 here.
    let day =
        chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap() + crate::helpers::sample_shift();
    assert_eq!(ts("evt_sample_025").await, format!("{day}T09:15:00.250Z"));
    assert_eq!(ts("evt_sample_026").await, format!("{day}T16:02:11.123Z"));
    assert_eq!(ts("evt_sample_024").await, format!("{day}T07:58:00.000Z"));
    let from_header = db
        .strings("SELECT event_type FROM analytics_events WHERE id = 'publisher-id-1'")
        .await;
    assert_eq!(from_header, ["message.sent"]);
    let types = db
        .count("SELECT count(DISTINCT event_type) FROM analytics_events")
        .await;
    assert_eq!(types, 25);

    // Live state after the conversation: closed, staff logged out, task done.
    let live = db
        .rows(
            "SELECT (SELECT active FROM live_conversations WHERE conversation_id = 'conv_5521'), \
             (SELECT online FROM live_staff WHERE staff_id = 'staff_17'), \
             (SELECT count(*) FROM live_tasks WHERE created AND NOT completed)",
        )
        .await;
    assert_eq!(live, [[json!(0), json!(0), json!(0)]]);
    assert_eq!(
        app.metric(r#"butler_analytics_events_inserted_total{event_type="staff.logout"}"#),
        1.0
    );
    // Where the commits' time went: every phase took some, and together no more than
    // the commits as the consumer timed them.
    let phases = ["events", "live_state", "dirty_hours", "tallies", "commit"].map(|phase| {
        app.metric(&format!(
            r#"butler_analytics_ingest_commit_phase_seconds_total{{phase="{phase}"}}"#
        ))
    });
    assert!(phases.iter().all(|s| *s > 0.0), "{phases:?}");
    let commits = app.metric("butler_analytics_ingest_commit_duration_seconds_sum");
    assert!(
        phases.iter().sum::<f64>() <= commits,
        "{phases:?} within {commits} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_published_twice_gives_one_row() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "");
    let js = nats.jetstream().await;
    let first = message_event("dup-1");
    let mut second: Value = serde_json::from_slice(&first).unwrap();
    second["propertyId"] = "someone_else".into();
    publish_all(
        &js,
        vec![
            ("butler.events.message.received".into(), first),
            (
                "butler.events.message.received".into(),
                serde_json::to_vec(&second).unwrap(),
            ),
        ],
    )
    .await;
    let duplicate = r#"butler_analytics_events_duplicate_total{event_type="message.received"}"#;
    wait_until(WAIT, "the duplicate to be counted", || async {
        app.metric(duplicate) == 1.0
    })
    .await;
    assert_eq!(app.event_count().await, 1);
    let db = app.db().await;
    let property = db
        .strings("SELECT property_id FROM analytics_events WHERE id = 'dup-1'")
        .await;
    assert_eq!(property, ["prop_test"], "the first stored wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_redelivered_after_its_ack_wait_gives_one_row() {
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "nats:\n  ack_wait_ms: 1000\ningest:\n  flush_interval_ms: 50\nstorage:\n  busy_timeout_ms: 20000\n",
    );
    let js = nats.jetstream().await;
    // Hold commits back so the first delivery cannot commit within its ack wait.
    let mut lock = app.hold_commits().await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            message_event("slow-1"),
        )],
    )
    .await;
    wait_until(
        WAIT,
        "the server to redeliver it past its ack wait",
        || async { crate::helpers::consumer_info(&js).await.num_redelivered >= 1 },
    )
    .await;
    lock.release().await;

    let duplicate = r#"butler_analytics_events_duplicate_total{event_type="message.received"}"#;
    wait_until(
        WAIT,
        "the redelivery to be stored as a duplicate",
        || async { app.metric(duplicate) >= 1.0 },
    )
    .await;
    assert_eq!(app.event_count().await, 1);
    wait_until(WAIT, "both deliveries acked", || async {
        crate::helpers::consumer_info(&js).await.num_ack_pending == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_stream_of_events_alone_the_consumer_has_no_filter() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "");
    let js = nats.jetstream().await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            message_event("own-1"),
        )],
    )
    .await;
    wait_until(WAIT, "the event stored", || async {
        app.event_count().await == 1
    })
    .await;
    let info = crate::helpers::consumer_info(&js).await;
    assert_eq!(info.config.filter_subject, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_stream_shared_with_other_subjects_only_events_are_read() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    js.update_stream(async_nats::jetstream::stream::Config {
        name: "BUTLER_EVENTS".into(),
        subjects: vec!["butler.events.>".into(), "audit.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    publish_all(
        &js,
        vec![
            ("audit.login".into(), br#"{"who":"ops"}"#.to_vec()),
            (
                "butler.events.message.received".into(),
                message_event("shared-1"),
            ),
        ],
    )
    .await;
    let app = App::start(&nats.url(), "");
    wait_until(WAIT, "the event stored", || async {
        app.event_count().await == 1
    })
    .await;
    let info = crate::helpers::consumer_info(&js).await;
    assert_eq!(info.config.filter_subject, "butler.events.>");
    wait_until(WAIT, "the event acked", || async {
        crate::helpers::consumer_info(&js)
            .await
            .ack_floor
            .stream_sequence
            == 2
    })
    .await;
    let db = app.db().await;
    let dead = db
        .count("SELECT count(*) FROM analytics_dead_letters")
        .await;
    assert_eq!(dead, 0, "the other subject is never delivered");
    assert_eq!(crate::helpers::consumer_info(&js).await.num_pending, 0);
}

/// The commits of a run, by size: (batches, batches of more than `over` events).
fn batches_over(app: &App, over: u32) -> (f64, f64) {
    let all = app.metric("butler_analytics_ingest_batch_size_count");
    let small = app.metric(&format!(
        "butler_analytics_ingest_batch_size_bucket{{le=\"{over}\"}}"
    ));
    (all, all - small)
}

/// Group commit: a backlog built while the writer is held goes in batches larger than
/// `batch_size`, up to `max_batch`; light traffic still goes one small batch at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_committed_in_batches_up_to_max_batch() {
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "ingest:\n  batch_size: 100\n  max_batch: 2500\n  flush_interval_ms: 100\n",
    );
    let js = nats.jetstream().await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            message_event("gc-first"),
        )],
    )
    .await;
    wait_until(WAIT, "the first event", || async {
        app.event_count().await == 1
    })
    .await;
    assert_eq!(batches_over(&app, 100), (1.0, 0.0));

    let mut lock = app.hold_commits().await;
    let events = crate::helpers::message_events("gc", 10_000);
    publish_all(&js, events).await;
    // The writer waits on its first batch while the reader gathers the backlog.
    wait_until(WAIT, "the backlog gathered", || async {
        crate::helpers::consumer_info(&js).await.num_ack_pending >= 2_600
    })
    .await;
    lock.release().await;
    wait_until(WAIT, "the backlog stored", || async {
        app.event_count().await == 10_001
    })
    .await;
    let (batches, large) = batches_over(&app, 1000);
    println!(
        "10,000 events in {} commits, {large} of more than 1,000",
        batches - 1.0
    );
    assert!(large >= 1.0, "no batch above batch_size: {batches} commits");
    assert_eq!(
        app.metric("butler_analytics_ingest_batch_size_bucket{le=\"2500\"}"),
        batches,
        "a batch above max_batch"
    );
}

/// `butler_analytics_freshness_seconds`: each new event once at its commit, from its
/// own timestamp; each live dashboard value written from the earliest timestamp among
/// the events it shows for the first time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_is_measured_from_each_events_own_timestamp() {
    let nats = NatsServer::start();
    // About noon in the default zone, so that events two hours old are of today.
    let app = App::start(
        &nats.url(),
        &format!(
            "aggregation:\n  timezone: {}\ndashboard:\n  push_interval_ms: 100\n",
            crate::helpers::midday_zone()
        ),
    );
    let js = nats.jetstream().await;
    let event = |id: &str, age: chrono::Duration| {
        let at = (Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let payload =
            json!({"id": id, "propertyId": "prop_fresh", "channel": "sms", "timestamp": at});
        (
            "butler.events.message.received".to_owned(),
            serde_json::to_vec(&payload).unwrap(),
        )
    };
    let series = |stage: &str, le: Option<&str>| {
        let name = match le {
            Some(le) => {
                format!(r#"butler_analytics_freshness_seconds_bucket{{stage="{stage}",le="{le}"}}"#)
            }
            None => format!(r#"butler_analytics_freshness_seconds_count{{stage="{stage}"}}"#),
        };
        app.metric(&name)
    };

    // A fresh event: committed and shown within half a minute.
    publish_all(&js, vec![event("fresh-1", chrono::Duration::zero())]).await;
    wait_until(WAIT, "its dashboard value written", || async {
        series("dashboard", None) == 1.0
    })
    .await;
    assert_eq!(series("committed", None), 1.0);
    assert_eq!(series("committed", Some("30")), 1.0);
    assert_eq!(series("dashboard", Some("30")), 1.0);

    // Two events two hours old, and the fresh one again (a duplicate): two more
    // commits observed, both between one and six hours; the value that first shows
    // them, from the earlier of the two.
    publish_all(
        &js,
        vec![
            event("late-1", chrono::Duration::minutes(130)),
            event("late-2", chrono::Duration::minutes(121)),
            event("fresh-1", chrono::Duration::zero()),
        ],
    )
    .await;
    wait_until(WAIT, "the late events committed and shown", || async {
        series("committed", None) == 3.0 && series("dashboard", None) >= 2.0
    })
    .await;
    assert_eq!(series("committed", Some("3600")), 1.0);
    assert_eq!(series("committed", Some("21600")), 3.0);
    assert_eq!(series("dashboard", Some("3600")), 1.0);
    assert_eq!(
        series("dashboard", Some("21600")),
        series("dashboard", None)
    );
    let shown = series("dashboard", None);
    let dashboard_sum = app.metric(r#"butler_analytics_freshness_seconds_sum{stage="dashboard"}"#);
    assert!(
        dashboard_sum >= 130.0 * 60.0,
        "the later value counts from the earliest event (130 minutes): {dashboard_sum} s in all"
    );

    // An event of three days ago with a fresh one: both committed; the value written
    // shows the fresh one only, and counts from it, not from the old one.
    publish_all(
        &js,
        vec![
            event("old-1", chrono::Duration::days(3)),
            event("fresh-2", chrono::Duration::zero()),
        ],
    )
    .await;
    wait_until(WAIT, "the fresh one shown", || async {
        series("committed", None) == 5.0 && series("dashboard", None) > shown
    })
    .await;
    assert_eq!(series("committed", Some("21600")), 4.0);
    assert_eq!(series("committed", Some("+Inf")), 5.0);
    assert_eq!(
        series("dashboard", Some("30")) - 1.0,
        series("dashboard", None) - shown,
        "the values written since, within 30 s of the fresh event"
    );
}
