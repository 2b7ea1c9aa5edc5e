use butler_events::{Event, EventTime, EventType};
use butler_storage::{Storage, StorageOptions};
use chrono::{DateTime, Duration, Utc};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn ts(t: DateTime<Utc>) -> String {
    EventTime::from_datetime(&t).to_string()
}

fn settings(holder: &str) -> AggregatorSettings {
    AggregatorSettings {
        zones: butler_events::Zones::default(),
        raw_retention: Duration::days(36_500),
        holder: holder.into(),
    }
}

fn message(id: &str, ts: &str) -> Event {
    Event::new(
        id,
        EventType::MessageReceived,
        EventTime::from_datetime(&at(ts)),
        "p",
    )
    .with_channel("sms")
}

/// Two handles on one file behave like two processes: separate connections, one lease.
#[tokio::test]
async fn two_processes_never_run_the_same_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let first = Storage::open(&StorageOptions::new(&path)).await.unwrap();
    let second = Storage::open(&StorageOptions::new(&path)).await.unwrap();
    let now = at("2026-11-25T12:00:00Z");
    let lease = "aggregate:hourly_message_counts";
    let later = ts(now + Duration::minutes(30));
    assert!(
        first
            .acquire_job_lease(lease, "host-a:1", &ts(now), &later)
            .await
            .unwrap()
    );

    let b = Aggregator::new(second.clone(), settings("host-b:2"));
    let err = b
        .run_due(Job::HourlyMessageCounts, "schedule", now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AggregateError::Busy("hourly_message_counts")),
        "{err}"
    );
    // Another job is not held up.
    assert!(
        b.run_due(Job::HourlyResponseTimes, "schedule", now)
            .await
            .is_ok()
    );

    first.release_job_lease(lease, "host-a:1").await.unwrap();
    assert!(
        b.run_due(Job::HourlyMessageCounts, "schedule", now)
            .await
            .is_ok()
    );

    // A lease left by a process that died is taken over once it expires.
    let expired = ts(now - Duration::seconds(1));
    assert!(
        first
            .acquire_job_lease(lease, "host-a:1", &ts(now - Duration::hours(1)), &expired)
            .await
            .unwrap()
    );
    assert!(
        b.run_due(Job::HourlyMessageCounts, "schedule", now)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn open_buckets_wait_until_they_close_and_old_buckets_are_never_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let agg = Aggregator::new(
        storage.clone(),
        AggregatorSettings {
            raw_retention: Duration::days(90),
            ..settings("h:1")
        },
    );
    storage
        .commit_batch(&[message("a", "2026-11-25T11:30:00Z")], &[])
        .await
        .unwrap();

    let report = agg
        .run_due(
            Job::HourlyMessageCounts,
            "schedule",
            at("2026-11-25T11:45:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(report.periods_recomputed, 0, "the 11:00 hour is still open");
    let report = agg
        .run_due(
            Job::HourlyMessageCounts,
            "schedule",
            at("2026-11-25T12:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(
        (report.periods_recomputed, report.rows_written),
        (1, 1),
        "it closed"
    );
    let report = agg
        .run_due(
            Job::HourlyMessageCounts,
            "schedule",
            at("2026-11-25T13:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(report.periods_recomputed, 0, "nothing new");

    // Seen from 91 days later, that hour is past the raw retention: a late event for it
    // queues the bucket, but the run leaves the stored row alone.
    storage
        .commit_batch(&[message("b", "2026-11-25T11:40:00Z")], &[])
        .await
        .unwrap();
    let report = agg
        .run_due(
            Job::HourlyMessageCounts,
            "schedule",
            at("2027-02-24T12:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(report.periods_recomputed, 0);
    let statuses = storage.job_statuses().await.unwrap();
    let hourly = statuses
        .iter()
        .find(|s| s.job == "hourly_message_counts")
        .unwrap();
    assert_eq!(hourly.pending_buckets, 0, "the old bucket left the queue");
    assert_eq!(
        hourly.watermark.as_deref(),
        Some("2026-11-25T12:00:00.000Z")
    );
}

/// A run recomputing more buckets than one write holds writes them all, in several
/// transactions, and leaves the queue empty and the watermark at the last bucket.
#[tokio::test]
async fn a_run_of_more_buckets_than_one_write_holds_writes_every_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let agg = Aggregator::new(storage.clone(), settings("h:1"));
    let start = at("2026-10-01T00:00:00Z");
    let hours = (WRITE_BUCKETS + WRITE_BUCKETS / 2) as i64;
    let events: Vec<Event> = (0..hours)
        .flat_map(|h| {
            let t = start + Duration::hours(h) + Duration::minutes(7);
            (0..=(h % 3)).map(move |k| message(&format!("e{h}_{k}"), &ts(t)))
        })
        .collect();
    for chunk in events.chunks(1000) {
        storage.commit_batch(chunk, &[]).await.unwrap();
    }
    let now = start + Duration::hours(hours + 1);
    let report = agg
        .run_due(Job::HourlyMessageCounts, "schedule", now)
        .await
        .unwrap();
    assert_eq!(report.periods_recomputed, hours as u64);
    assert_eq!(report.rows_written, hours as u64);
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("a.db").display()))
        .await
        .unwrap();
    let (rows, total): (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(count) FROM agg_message_counts_hourly")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((rows, total), (hours, events.len() as i64));
    let statuses = storage.job_statuses().await.unwrap();
    let hourly = statuses
        .iter()
        .find(|s| s.job == "hourly_message_counts")
        .unwrap();
    assert_eq!(hourly.pending_buckets, 0);
    assert_eq!(
        hourly.watermark.as_deref(),
        Some(ts(start + Duration::hours(hours)).as_str())
    );
}
