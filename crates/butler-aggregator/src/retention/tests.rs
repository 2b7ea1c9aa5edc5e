use butler_events::{Event, EventTime, EventType};
use butler_storage::aggregates::*;
use butler_storage::aggregation::PendingBucket;
use butler_storage::{Storage, StorageOptions};
use chrono::{DateTime, Utc};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn event(id: &str, ts: &str) -> Event {
    Event {
        id: id.into(),
        event_type: EventType::MessageSent,
        timestamp: EventTime::from_datetime(&at(ts)),
        property_id: "p".into(),
        channel: None,
        guest_id: None,
        staff_id: None,
        conversation_id: None,
        task_id: None,
        value: None,
        duration_ms: None,
        metadata: None,
        live_effect: None,
    }
}

fn bucket(key: &str) -> PendingBucket {
    PendingBucket {
        property_id: "p".into(),
        period_key: key.into(),
        start: String::new(),
        end: String::new(),
    }
}

async fn keys(storage: &Storage, table: &str, column: &str) -> Vec<String> {
    let pool = sqlx_pool(storage).await;
    let sql = format!("SELECT {column} FROM {table} ORDER BY 1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(&pool)
        .await
        .unwrap()
}

async fn sqlx_pool(storage: &Storage) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(storage.path())
            .read_only(true),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn retention_deletes_exactly_the_rows_past_each_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let now = at("2026-11-25T12:00:00Z");
    let days = RetentionDays {
        raw_events: 90,
        hourly: 30,
        daily: 365,
        weekly: 730,
        monthly: 1095,
    };

    // Raw events: cutoff 2026-08-27T12:00:00.000Z.
    storage
        .commit_batch(
            &[
                event("old", "2026-08-27T11:59:59.999Z"),
                event("edge", "2026-08-27T12:00:00.000Z"),
                event("new", "2026-11-25T11:00:00Z"),
            ],
            &[],
        )
        .await
        .unwrap();
    // Hourly: cutoff hour 2026-10-26T12:00:00Z.
    for key in [
        "2026-10-26T11:00:00Z",
        "2026-10-26T12:00:00Z",
        "2026-11-25T10:00:00Z",
    ] {
        let row = MessageCountRow {
            period_start: key.into(),
            property_id: "p".into(),
            channel: "sms".into(),
            direction: "inbound".into(),
            count: 1,
        };
        storage
            .replace_bucket(
                "t",
                &bucket(key),
                &BucketRows::MessageCounts(vec![row]),
                "2026-11-25T12:00:00.000Z",
            )
            .await
            .unwrap();
    }
    // Daily: cutoff 2025-11-25.
    for key in ["2025-11-24", "2025-11-25", "2026-11-24"] {
        let row = StaffPerformanceRow {
            period_date: key.into(),
            property_id: "p".into(),
            staff_id: "s".into(),
            ..Default::default()
        };
        storage
            .replace_bucket(
                "t",
                &bucket(key),
                &BucketRows::StaffPerformance(vec![row]),
                "2026-11-25T12:00:00.000Z",
            )
            .await
            .unwrap();
    }
    // Weekly: cutoff 2024-11-25 (a Monday key before it goes).
    for key in ["2024-11-18", "2024-11-25", "2026-11-23"] {
        let row = SatisfactionRow {
            period_start: key.into(),
            property_id: "p".into(),
            channel: "sms".into(),
            ..Default::default()
        };
        storage
            .replace_bucket(
                "t",
                &bucket(key),
                &BucketRows::Satisfaction(vec![row]),
                "2026-11-25T12:00:00.000Z",
            )
            .await
            .unwrap();
    }
    // Monthly: cutoff 2023-11.
    for key in ["2023-10", "2023-11", "2026-11"] {
        let row = MonthlySummaryRow {
            period_month: key.into(),
            property_id: "p".into(),
            top_intents: "[]".into(),
            channel_breakdown: "{}".into(),
            ..Default::default()
        };
        storage
            .replace_bucket(
                "t",
                &bucket(key),
                &BucketRows::MonthlySummary(vec![row]),
                "2026-11-25T12:00:00.000Z",
            )
            .await
            .unwrap();
    }

    let deleted = apply(&storage, days, now).await.unwrap();
    let deleted_of = |t: &str| deleted.iter().find(|(name, _)| *name == t).map(|(_, n)| *n);
    assert_eq!(deleted_of("analytics_events"), Some(1));
    assert_eq!(
        deleted_of("agg_dirty_hours"),
        Some(1),
        "the 11:00 hour of the old event"
    );
    assert_eq!(deleted_of("agg_message_counts_hourly"), Some(1));
    assert_eq!(deleted_of("agg_staff_performance_daily"), Some(1));
    assert_eq!(deleted_of("agg_satisfaction_weekly"), Some(1));
    assert_eq!(deleted_of("agg_monthly_summary"), Some(1));

    assert_eq!(
        keys(&storage, "analytics_events", "id").await,
        ["edge", "new"]
    );
    assert_eq!(
        keys(&storage, "agg_message_counts_hourly", "period_start").await,
        ["2026-10-26T12:00:00Z", "2026-11-25T10:00:00Z"]
    );
    assert_eq!(
        keys(&storage, "agg_staff_performance_daily", "period_date").await,
        ["2025-11-25", "2026-11-24"]
    );
    assert_eq!(
        keys(&storage, "agg_satisfaction_weekly", "period_start").await,
        ["2024-11-25", "2026-11-23"]
    );
    assert_eq!(
        keys(&storage, "agg_monthly_summary", "period_month").await,
        ["2023-11", "2026-11"]
    );

    // Nothing more to do the second time.
    let again = apply(&storage, days, now).await.unwrap();
    assert!(again.iter().all(|(_, n)| *n == 0), "{again:?}");
}

#[tokio::test]
async fn deletes_more_rows_than_one_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let old: Vec<Event> = (0..12_345)
        .map(|i| event(&format!("e{i}"), "2026-01-01T00:00:00Z"))
        .collect();
    storage.commit_batch(&old, &[]).await.unwrap();
    let days = RetentionDays {
        raw_events: 90,
        hourly: 30,
        daily: 365,
        weekly: 730,
        monthly: 1095,
    };
    let deleted = apply(&storage, days, at("2026-11-25T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        deleted
            .iter()
            .find(|(t, _)| *t == "analytics_events")
            .map(|(_, n)| *n),
        Some(12_345)
    );
}
