//! Moving a SQLite deployment to PostgreSQL: every table's rows copied into an empty
//! PostgreSQL database of the same schema, then the counts compared.
//!
//! Rows are read from SQLite as they are stored and written to PostgreSQL a chunk at
//! a time, each value cast to its column's type there (text instants to
//! `timestamptz`, 0/1 to `boolean`, JSON text to `jsonb`, blobs to `bytea`). Generated
//! columns are computed again by PostgreSQL; identity counters continue after the
//! highest id copied. Job leases are not copied: they belong to running processes.

use futures_util::TryStreamExt;
use sqlx::{Row, TypeInfo, ValueRef};

use crate::postgres::PgDb;
use crate::sqlite::SqliteDb;
use crate::{Storage, StorageError};

/// Rows written per statement.
const CHUNK: usize = 5_000;

/// Tables that are not data: sqlx's and SQLite's own, and the running processes'
/// leases.
const SKIPPED: [&str; 3] = ["_sqlx_migrations", "sqlite_sequence", "agg_job_leases"];

/// How one table went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopied {
    /// The table.
    pub table: String,
    /// Rows in the SQLite database.
    pub source_rows: i64,
    /// Rows in the PostgreSQL database afterwards.
    pub target_rows: i64,
}

/// A column of the target table, and how a text value becomes its type.
struct Column {
    name: String,
    cast: &'static str,
}

fn cast_of(data_type: &str) -> &'static str {
    match data_type {
        "timestamp with time zone" => "timestamptz",
        "date" => "date",
        "bigint" => "int8",
        "integer" => "int4",
        "double precision" => "float8",
        "boolean" => "bool",
        "jsonb" => "jsonb",
        "bytea" => "bytea",
        _ => "text",
    }
}

/// A SQLite value as the text PostgreSQL casts to the column's type.
fn as_text(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(None);
    }
    let type_name = raw.type_info().name().to_owned();
    Ok(Some(match type_name.as_str() {
        "INTEGER" => row.try_get::<i64, _>(i)?.to_string(),
        // Debug formatting prints the shortest text that reads back as the same f64.
        "REAL" => format!("{:?}", row.try_get::<f64, _>(i)?),
        "BLOB" => {
            let bytes: Vec<u8> = row.try_get(i)?;
            let mut hex = String::with_capacity(2 + 2 * bytes.len());
            hex.push_str("\\x");
            for b in bytes {
                hex.push_str(&format!("{b:02x}"));
            }
            hex
        }
        _ => row.try_get::<String, _>(i)?,
    }))
}

impl Storage {
    /// Copies every table of this SQLite database into `target`, an empty PostgreSQL
    /// database migrated to the same version, and returns each table's counts;
    /// `progress` hears of each table as it starts and of every chunk written: (table,
    /// rows copied, rows to copy).
    ///
    /// # Errors
    /// [`StorageError::Unsupported`] unless this is SQLite and `target` PostgreSQL,
    /// or when `target` already holds events; any database error (what was copied
    /// stays; drop and recreate the target database to start again).
    pub async fn copy_into(
        &self,
        target: &Storage,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Vec<TableCopied>, StorageError> {
        let (crate::sql::Db::Sqlite(source), crate::sql::Db::Postgres(pg)) =
            (&self.backend, &target.backend)
        else {
            return Err(StorageError::Unsupported(
                "migrate-data copies a SQLite database into a PostgreSQL one",
            ));
        };
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics_events")
            .fetch_one(&pg.pool)
            .await?;
        if events > 0 {
            return Err(StorageError::Unsupported(
                "the PostgreSQL database holds events already: copy into an empty one",
            ));
        }
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&source.sql_readers)
                .await?;
        let mut report = Vec::new();
        for table in tables.iter().filter(|t| !SKIPPED.contains(&t.as_str())) {
            report.push(copy_table(source, pg, table, progress).await?);
        }
        Ok(report)
    }
}

/// Copies one table in chunks, in one transaction on the target.
async fn copy_table(
    source: &SqliteDb,
    pg: &PgDb,
    table: &str,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<TableCopied, StorageError> {
    let count = format!("SELECT count(*) FROM {table}");
    let source_rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count.clone()))
        .fetch_one(&source.sql_readers)
        .await?;
    let total = source_rows.max(0) as u64;
    progress(table, 0, total);
    let columns = target_columns(pg, table).await?;
    let insert = unnest_insert(table, &columns);
    let mut tx = pg.pool.begin().await?;
    // The one row the migration put there, replaced by the source's.
    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
        .execute(&mut *tx)
        .await?;
    let quoted: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let select = format!("SELECT {} FROM {table}", quoted.join(", "));
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&source.sql_readers);
    let mut chunk: Vec<Vec<Option<String>>> = vec![Vec::new(); columns.len()];
    let mut copied = 0u64;
    loop {
        let row = rows.try_next().await?;
        if let Some(row) = &row {
            for (i, values) in chunk.iter_mut().enumerate() {
                values.push(as_text(row, i)?);
            }
        }
        let full = chunk[0].len() >= CHUNK;
        if (full || row.is_none()) && !chunk[0].is_empty() {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
            for values in &chunk {
                query = query.bind(values);
            }
            query.execute(&mut *tx).await?;
            copied += chunk[0].len() as u64;
            progress(table, copied, total);
            chunk.iter_mut().for_each(Vec::clear);
        }
        if row.is_none() {
            break;
        }
    }
    drop(rows);
    if has_identity(table) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
             coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let target_rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
        .fetch_one(&pg.pool)
        .await?;
    Ok(TableCopied {
        table: table.to_owned(),
        source_rows,
        target_rows,
    })
}

/// The tables whose `id` PostgreSQL generates: copied ids override it, and its
/// sequence then continues after them.
fn has_identity(table: &str) -> bool {
    table == "analytics_dead_letters" || table == "agg_job_runs"
}

/// The columns of `table` in the target, in order, generated ones left out.
async fn target_columns(pg: &PgDb, table: &str) -> Result<Vec<Column>, StorageError> {
    let columns: Vec<Column> = sqlx::query_as::<_, (String, String)>(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' \
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&pg.pool)
    .await?
    .into_iter()
    .map(|(name, data_type)| Column {
        cast: cast_of(&data_type),
        name,
    })
    .collect();
    if columns.is_empty() {
        return Err(StorageError::Unsupported(
            "the PostgreSQL database lacks a table of the SQLite one: run migrate on it first",
        ));
    }
    Ok(columns)
}

/// The INSERT of a chunk: each column bound as a text array, cast to its type.
fn unnest_insert(table: &str, columns: &[Column]) -> String {
    let quoted: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
    let arrays: Vec<String> = (1..=columns.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let casts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("c{i}::{}", c.cast))
        .collect();
    let names: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    format!(
        "INSERT INTO {table} ({cols}) {overriding} SELECT {casts} FROM UNNEST({arrays}) AS u({names})",
        cols = quoted.join(", "),
        overriding = if has_identity(table) {
            "OVERRIDING SYSTEM VALUE"
        } else {
            ""
        },
        casts = casts.join(", "),
        arrays = arrays.join(", "),
        names = names.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageOptions;
    use crate::testing::TempPostgres;
    use butler_events::{Event, EventTime, EventType, LiveEffect};

    /// A copied database answers as the original: the same rows in every table, the
    /// same tallies and live state, and new dead letters get new ids.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_holds_every_row_and_answers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
            .await
            .unwrap();
        let at = |ms: i64| EventTime::from_millis(1_764_000_000_000 + ms);
        let events: Vec<Event> = (0..12_000)
            .map(|i| {
                Event::new(
                    format!("e{i}"),
                    EventType::ConversationStarted,
                    at(i * 997),
                    "p",
                )
                .with_conversation(&format!("c{}", i % 50))
                .with_metadata(r#"{"lang":"pt"}"#)
                .with_live_effect(LiveEffect::Conversation { active: i % 3 != 0 })
            })
            .collect();
        let letter = crate::NewDeadLetter {
            subject: "butler.events.x".into(),
            stream: "S".into(),
            stream_sequence: 9,
            published_at: None,
            payload: vec![0, 159, 146, 150],
            headers_json: "{}".into(),
            reason: butler_events::RejectReason::InvalidJson,
            detail: "not JSON".into(),
        };
        sqlite
            .commit_batch(&events, std::slice::from_ref(&letter))
            .await
            .unwrap();
        let pg_db = TempPostgres::create().await;
        let postgres = Storage::open(&pg_db.options()).await.unwrap();
        let mut heard = 0;
        let report = sqlite
            .copy_into(&postgres, &mut |_, _, _| heard += 1)
            .await
            .unwrap();
        assert!(heard > 3);
        for t in &report {
            assert_eq!(t.source_rows, t.target_rows, "{t:?}");
        }
        let events_copied = report
            .iter()
            .find(|t| t.table == "analytics_events")
            .unwrap();
        assert_eq!(events_copied.target_rows, 12_000);
        let (from, to) = (at(0), at(12_000 * 997));
        assert_eq!(
            sqlite.tallies("p", from, to).await.unwrap(),
            postgres.tallies("p", from, to).await.unwrap()
        );
        assert_eq!(
            sqlite.live_counts("p").await.unwrap(),
            postgres.live_counts("p").await.unwrap()
        );
        let filter = crate::DeadLetterFilter::default();
        let copied = postgres.list_dead_letters(&filter).await.unwrap();
        assert_eq!(copied[0].payload, letter.payload);
        // A new dead letter continues after the copied ids.
        let mut next = letter.clone();
        next.stream_sequence = 10;
        postgres.commit_batch(&[], &[next]).await.unwrap();
        let ids: Vec<i64> = postgres
            .list_dead_letters(&filter)
            .await
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(ids, [1, 2]);
        // A second copy into the same database is refused.
        assert!(
            sqlite
                .copy_into(&postgres, &mut |_, _, _| {})
                .await
                .is_err()
        );
        sqlite.close().await;
        postgres.close().await;
    }
}
