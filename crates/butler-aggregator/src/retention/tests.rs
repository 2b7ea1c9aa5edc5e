use butler_events::{Event, EventTime, EventType, Granularity};
use butler_storage::aggregation::PendingBucket;
use butler_storage::tables::{AGG_TABLES, AggTable, BucketRows, Cell, Kind};
use butler_storage::{Storage, StorageOptions};
use chrono::{DateTime, Utc};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn event(id: &str, ts: &str) -> Event {
    Event::new(
        id,
        EventType::MessageSent,
        EventTime::from_datetime(&at(ts)),
        "p",
    )
}

fn bucket(key: &str) -> PendingBucket {
    PendingBucket {
        property_id: "p".into(),
        period_key: key.into(),
        // Retention reads the period column alone.
        start: EventTime::from_millis(0),
        end: EventTime::from_millis(0),
    }
}

/// A row of `table` for period `key`: every dimension `x`, every measure 1 (`[]` for
/// JSON).
fn row(table: &'static AggTable, key: &str) -> BucketRows {
    let mut cells = vec![Cell::Text(key.into()), Cell::Text("p".into())];
    cells.extend(table.dimensions.iter().map(|_| Cell::Text("x".into())));
    cells.extend(table.measures.iter().map(|m| match m.kind {
        Kind::Integer => Cell::Integer(Some(1)),
        Kind::Real => Cell::Real(Some(1.0)),
        Kind::Json => Cell::Text("[]".into()),
    }));
    BucketRows {
        table,
        rows: vec![cells],
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
            .filename(storage.path().unwrap())
            .read_only(true),
    )
    .await
    .unwrap()
}

fn days() -> RetentionDays {
    RetentionDays {
        raw_events: 90,
        hourly: 30,
        daily: 365,
        weekly: 730,
        monthly: 1095,
        live_state: 7,
    }
}

/// Every table retention touches, each around its own cutoff: the row of the period
/// before it goes, the period holding it stays. The raw cutoff falls inside an hour:
/// that hour's raw events before it go, and its tally and dirty hour stay with the
/// raw events after it.
#[tokio::test]
async fn retention_deletes_exactly_the_rows_past_each_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let now = at("2026-11-25T12:34:56.789Z");

    // Raw events: cutoff 2026-08-27T12:34:56.789Z, inside the 12:00 hour.
    storage
        .commit_batch(
            &[
                event("old", "2026-08-27T11:59:59.999Z"),
                event("early", "2026-08-27T12:10:00Z"),
                event("edge", "2026-08-27T12:34:56.789Z"),
                event("late", "2026-08-27T12:40:00Z"),
                event("new", "2026-11-25T11:00:00Z"),
            ],
            &[],
        )
        .await
        .unwrap();
    // Each aggregate table: a period before its cutoff, the one holding it, a recent
    // one. Hourly cutoff 2026-10-26T12:34:56Z, daily 2025-11-25, weekly 2024-11-25
    // (a Monday key before it goes), monthly 2023-11.
    let periods = |g: Granularity| match g {
        Granularity::Hour => [
            "2026-10-26T11:00:00Z",
            "2026-10-26T12:00:00Z",
            "2026-11-25T10:00:00Z",
        ],
        Granularity::Day => ["2025-11-24", "2025-11-25", "2026-11-24"],
        Granularity::Week => ["2024-11-18", "2024-11-25", "2026-11-23"],
        Granularity::Month => ["2023-10", "2023-11", "2026-11"],
    };
    for table in AGG_TABLES {
        for key in periods(table.granularity) {
            storage
                .replace_bucket(
                    table.job,
                    &bucket(key),
                    &row(table, key),
                    EventTime::from_millis(0),
                )
                .await
                .unwrap();
        }
    }

    let deleted = apply(&storage, days(), now).await.unwrap();
    let deleted_of = |t: &str| deleted.iter().find(|(name, _)| *name == t).map(|(_, n)| *n);
    assert_eq!(deleted_of("analytics_events"), Some(2));
    assert_eq!(
        keys(&storage, "analytics_events", "id").await,
        ["edge", "late", "new"]
    );
    assert_eq!(
        keys(&storage, "agg_dirty_hours", "hour_start").await,
        ["2026-08-27T12:00:00Z", "2026-11-25T11:00:00Z"],
        "the hour holding the cutoff keeps its dirty mark"
    );
    assert_eq!(
        keys(&storage, "event_tallies_hour", "hour").await,
        ["2026-08-27T12", "2026-11-25T11"],
        "the hour holding the cutoff keeps its tally while raw events of it remain"
    );
    for table in AGG_TABLES {
        assert_eq!(deleted_of(table.name), Some(1), "{}", table.name);
        assert_eq!(
            keys(&storage, table.name, table.period_column).await,
            periods(table.granularity)[1..],
            "{}",
            table.name
        );
    }

    // Nothing more to do the second time.
    let again = apply(&storage, days(), now).await.unwrap();
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
    let deleted = apply(&storage, days(), at("2026-11-25T12:00:00Z"))
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
