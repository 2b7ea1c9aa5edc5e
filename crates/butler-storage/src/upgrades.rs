//! Migrations that change what an earlier version wrote, each applied to a database
//! of the version before it, with rows in it, on both backends.

use sqlx::migrate::Migrator;

use crate::testing::TempPostgres;

/// The SQL of `migrator`'s migration `version`.
fn sql_of(migrator: &Migrator, version: i64) -> sqlx::AssertSqlSafe<String> {
    let migration = migrator
        .iter()
        .find(|m| m.version == version)
        .unwrap_or_else(|| panic!("no migration {version}"));
    sqlx::AssertSqlSafe(migration.sql.as_str().to_owned())
}

/// Statements that set up rows of the version before the knowledge gaps.
const BEFORE_GAPS: [&str; 2] = [
    "INSERT INTO agg_job_state (job, dirty_seq) VALUES \
     ('daily_intent_distribution', 42), ('daily_staff_performance', 42)",
    "INSERT INTO agg_intent_distribution_daily \
     (period_date, property_id, intent, count, avg_confidence, action_taken_count, escalated_count) \
     VALUES ('2026-11-24', 'p', 'spa', 3, 0.5, 1, 0)",
];

/// What the knowledge-gap migration must leave: the intent job's cursor back to the
/// start (its next run recomputes every day still kept), every other job's as it
/// was, and the stored rows with zero gaps until then.
const AFTER_GAPS: &str = "SELECT (SELECT dirty_seq FROM agg_job_state WHERE job = 'daily_intent_distribution'), \
     (SELECT dirty_seq FROM agg_job_state WHERE job = 'daily_staff_performance'), \
     (SELECT CAST(low_confidence_count + feedback_count AS BIGINT) FROM agg_intent_distribution_daily), \
     (SELECT CAST(count AS BIGINT) FROM agg_intent_distribution_daily)";

#[tokio::test]
async fn the_knowledge_gaps_recompute_the_intents_already_written_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let migrator = &crate::sqlite::MIGRATOR;
    for version in 1..9 {
        sqlx::raw_sql(sql_of(migrator, version))
            .execute(&pool)
            .await
            .unwrap();
    }
    for statement in BEFORE_GAPS {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    sqlx::raw_sql(sql_of(migrator, 9))
        .execute(&pool)
        .await
        .unwrap();
    let after: (i64, i64, i64, i64) = sqlx::query_as(AFTER_GAPS).fetch_one(&pool).await.unwrap();
    assert_eq!(after, (0, 42, 0, 3));
    pool.close().await;
}

#[tokio::test]
async fn the_knowledge_gaps_recompute_the_intents_already_written_on_postgres() {
    let db = TempPostgres::create().await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let migrator = &crate::postgres::MIGRATOR;
    for version in 1..6 {
        sqlx::raw_sql(sql_of(migrator, version))
            .execute(&pool)
            .await
            .unwrap();
    }
    for statement in BEFORE_GAPS {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    sqlx::raw_sql(sql_of(migrator, 6))
        .execute(&pool)
        .await
        .unwrap();
    let after: (i64, i64, i64, i64) = sqlx::query_as(AFTER_GAPS).fetch_one(&pool).await.unwrap();
    assert_eq!(after, (0, 42, 0, 3));
    pool.close().await;
}

/// Rows of the version before §8's conversation columns.
const BEFORE_BUSINESS_TIME: [&str; 2] = [
    "INSERT INTO agg_job_state (job, dirty_seq) VALUES \
     ('daily_conversation_metrics', 42), ('daily_staff_performance', 42)",
    "INSERT INTO agg_conversation_metrics_daily \
     (period_date, property_id, channel, conversations_started, conversations_resolved, \
      conversations_escalated, ai_handled_count, ai_escalated_count) \
     VALUES ('2026-11-24', 'p', 'sms', 3, 1, 0, 0, 0)",
];

/// The conversation job's cursor back to the start, the others' kept, the stored row
/// with zero counts in the new columns until its job recomputes it.
const AFTER_BUSINESS_TIME: &str = "SELECT (SELECT dirty_seq FROM agg_job_state WHERE job = 'daily_conversation_metrics'), \
     (SELECT dirty_seq FROM agg_job_state WHERE job = 'daily_staff_performance'), \
     (SELECT CAST(conversations_active + first_responses + first_response_sla_met + \
       resolutions_timed + ai_resolved_count AS BIGINT) FROM agg_conversation_metrics_daily), \
     (SELECT CAST(conversations_started AS BIGINT) FROM agg_conversation_metrics_daily)";

#[tokio::test]
async fn the_business_time_columns_recompute_the_conversations_already_written() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let sqlite = sqlx::SqlitePool::connect(&url).await.unwrap();
    let db = TempPostgres::create().await;
    let postgres = sqlx::PgPool::connect(db.url()).await.unwrap();
    for version in 1..11 {
        sqlx::raw_sql(sql_of(&crate::sqlite::MIGRATOR, version))
            .execute(&sqlite)
            .await
            .unwrap();
    }
    for version in 1..8 {
        sqlx::raw_sql(sql_of(&crate::postgres::MIGRATOR, version))
            .execute(&postgres)
            .await
            .unwrap();
    }
    for statement in BEFORE_BUSINESS_TIME {
        sqlx::query(statement).execute(&sqlite).await.unwrap();
        sqlx::query(statement).execute(&postgres).await.unwrap();
    }
    sqlx::raw_sql(sql_of(&crate::sqlite::MIGRATOR, 11))
        .execute(&sqlite)
        .await
        .unwrap();
    sqlx::raw_sql(sql_of(&crate::postgres::MIGRATOR, 8))
        .execute(&postgres)
        .await
        .unwrap();
    let on_sqlite: (i64, i64, i64, i64) = sqlx::query_as(AFTER_BUSINESS_TIME)
        .fetch_one(&sqlite)
        .await
        .unwrap();
    let on_postgres: (i64, i64, i64, i64) = sqlx::query_as(AFTER_BUSINESS_TIME)
        .fetch_one(&postgres)
        .await
        .unwrap();
    assert_eq!(on_sqlite, (0, 42, 0, 3));
    assert_eq!(on_postgres, (0, 42, 0, 3));
    sqlite.close().await;
    postgres.close().await;
}
