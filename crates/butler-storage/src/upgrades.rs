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

/// Applies `sqlite` (of the SQLite migrations) and `postgres` (of PostgreSQL's) to a
/// fresh database of each backend holding every migration before it and the rows
/// `before` writes, and returns what `after` reads on each.
async fn upgrade(
    sqlite: i64,
    postgres: i64,
    before: &[&'static str],
    after: &'static str,
) -> [(i64, i64, i64, i64); 2] {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let lite = sqlx::SqlitePool::connect(&url).await.unwrap();
    let db = TempPostgres::create().await;
    let pg = sqlx::PgPool::connect(db.url()).await.unwrap();
    for version in 1..=sqlite {
        if version == sqlite {
            for statement in before {
                sqlx::query(*statement).execute(&lite).await.unwrap();
            }
        }
        sqlx::raw_sql(sql_of(&crate::sqlite::MIGRATOR, version))
            .execute(&lite)
            .await
            .unwrap();
    }
    for version in 1..=postgres {
        if version == postgres {
            for statement in before {
                sqlx::query(*statement).execute(&pg).await.unwrap();
            }
        }
        sqlx::raw_sql(sql_of(&crate::postgres::MIGRATOR, version))
            .execute(&pg)
            .await
            .unwrap();
    }
    let on_sqlite = sqlx::query_as(after).fetch_one(&lite).await.unwrap();
    let on_postgres = sqlx::query_as(after).fetch_one(&pg).await.unwrap();
    lite.close().await;
    pg.close().await;
    [on_sqlite, on_postgres]
}

#[tokio::test]
async fn the_knowledge_gaps_recompute_the_intents_already_written() {
    assert_eq!(
        upgrade(9, 6, &BEFORE_GAPS, AFTER_GAPS).await,
        [(0, 42, 0, 3); 2]
    );
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
    assert_eq!(
        upgrade(11, 8, &BEFORE_BUSINESS_TIME, AFTER_BUSINESS_TIME).await,
        [(0, 42, 0, 3); 2]
    );
}
