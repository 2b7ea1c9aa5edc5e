use butler_events::Granularity;

use super::*;
use crate::{Storage, StorageOptions};

/// The declarations and the migrations describe the same tables: the same columns
/// in the same order, of the declared kinds, keyed by period, property and the
/// dimensions.
#[tokio::test]
async fn every_declared_table_is_the_table_the_migrations_create() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    for table in AGG_TABLES {
        let info: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid")
                .bind(table.name)
                .fetch_all(&storage.sqlite().sql_readers)
                .await
                .unwrap();
        let names: Vec<&str> = info.iter().map(|c| c.0.as_str()).collect();
        let declared: Vec<&str> = table.columns().collect();
        assert_eq!(names, declared, "{}", table.name);
        let keys = 2 + table.dimensions.len();
        for (i, (name, sql_type, pk)) in info.iter().enumerate() {
            let want = match table.find_measure(name).map(|m| m.kind) {
                None => "TEXT",
                Some(Kind::Integer) => "INTEGER",
                Some(Kind::Real) => "REAL",
                Some(Kind::Json) => "JSON",
            };
            assert_eq!(sql_type, want, "{}.{name}", table.name);
            let want_pk = if i < keys { i as i64 + 1 } else { 0 };
            assert_eq!(*pk, want_pk, "{}.{name} in the primary key", table.name);
        }
    }
    let all: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'agg\\_%' ESCAPE '\\' AND name NOT IN ('agg_dirty_hours', 'agg_job_state', 'agg_pending_buckets', 'agg_job_runs', 'agg_job_leases') ORDER BY name")
            .fetch_all(&storage.sqlite().sql_readers)
            .await
            .unwrap();
    let mut declared: Vec<&str> = AGG_TABLES.iter().map(|t| t.name).collect();
    declared.sort_unstable();
    assert_eq!(all, declared, "every aggregate table is declared");
    storage.close().await;
}

#[test]
fn metric_names_drop_agg_and_the_granularity() {
    for table in AGG_TABLES {
        let bare = table.name.strip_prefix("agg_").unwrap();
        let bare = ["_hourly", "_daily", "_weekly"]
            .iter()
            .find_map(|s| bare.strip_suffix(s))
            .unwrap_or(bare);
        assert_eq!(table.metric_prefix, bare, "{}", table.name);
    }
    let mut jobs: Vec<&str> = AGG_TABLES.iter().map(|t| t.job).collect();
    jobs.sort_unstable();
    jobs.dedup();
    assert_eq!(jobs.len(), AGG_TABLES.len(), "one job per table");
}

#[test]
fn labels_are_the_columns_in_camel_case() {
    let label = |table: &'static AggTable, column| table.measure(column).label();
    assert_eq!(
        label(&CONVERSATION_METRICS_DAILY, "conversations_started"),
        "conversationsStarted"
    );
    assert_eq!(label(&RESPONSE_TIMES_HOURLY, "avg_ms"), "avgMs");
    assert_eq!(label(&MESSAGE_COUNTS_HOURLY, "count"), "count");
    assert_eq!(label(&SATISFACTION_WEEKLY, "rating_1"), "rating1");
}

#[test]
fn a_row_gives_its_values_in_column_order() {
    let row = ResponseTimeRow {
        period_start: "2026-11-24T10:00:00Z".into(),
        property_id: "p".into(),
        channel: "sms".into(),
        count: 2,
        avg_ms: Some(150),
        p50_ms: Some(100),
        p95_ms: Some(200),
        p99_ms: Some(200),
        max_ms: None,
    };
    let rows = BucketRows::of(vec![row]);
    assert_eq!(rows.table.name, "agg_response_times_hourly");
    assert_eq!(
        rows.rows[0],
        vec![
            Cell::Text("2026-11-24T10:00:00Z".into()),
            Cell::Text("p".into()),
            Cell::Text("sms".into()),
            Cell::Integer(Some(2)),
            Cell::Integer(Some(150)),
            Cell::Integer(Some(100)),
            Cell::Integer(Some(200)),
            Cell::Integer(Some(200)),
            Cell::Integer(None),
        ]
    );
    assert_eq!(rows.rows[0].len(), RESPONSE_TIMES_HOURLY.columns().count());
}

/// The same on PostgreSQL, in its types: the period an instant, a date or the
/// month's key; counts `bigint`, fractions `double precision`, JSON `jsonb`.
#[tokio::test]
async fn every_declared_table_is_the_table_the_postgres_migrations_create() {
    let db = crate::testing::TempPostgres::create().await;
    let storage = Storage::open(&db.options()).await.unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    for table in AGG_TABLES {
        let info: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table.name)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let names: Vec<&str> = info.iter().map(|c| c.0.as_str()).collect();
        let declared: Vec<&str> = table.columns().collect();
        assert_eq!(names, declared, "{}", table.name);
        for (name, sql_type) in &info {
            let want = if name == table.period_column {
                match table.granularity {
                    Granularity::Hour => "timestamp with time zone",
                    Granularity::Day | Granularity::Week => "date",
                    Granularity::Month => "text",
                }
            } else {
                match table.find_measure(name).map(|m| m.kind) {
                    None => "text",
                    Some(Kind::Integer) => "bigint",
                    Some(Kind::Real) => "double precision",
                    Some(Kind::Json) => "jsonb",
                }
            };
            assert_eq!(sql_type, want, "{}.{name}", table.name);
        }
        let key: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::regclass AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
        )
        .bind(table.name)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            key,
            declared[..2 + table.dimensions.len()],
            "{} primary key",
            table.name
        );
    }
    storage.close().await;
}
