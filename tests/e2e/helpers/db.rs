//! The pipeline's database as the tests read it, on either backend:
//! `BUTLER_TEST_BACKEND=postgres` runs the suite on a PostgreSQL database of each
//! test's own (`BUTLER_TEST_POSTGRES_URL` names the server), anything else on a
//! SQLite file. Rows come back as JSON values in the forms SQLite stores, so one
//! assertion holds on both: instants as `YYYY-MM-DDTHH:MM:SS.sssZ` (an hour period as
//! `YYYY-MM-DDTHH:00:00Z`), dates as `YYYY-MM-DD`, booleans as 0 or 1, JSON parsed.

use butler_events::EventTime;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// The backend the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The SQLite file (the default).
    Sqlite,
    /// A PostgreSQL database per test.
    Postgres,
}

/// The backend of this run.
pub fn backend() -> Backend {
    match std::env::var("BUTLER_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// A read connection pool on the pipeline's database.
pub enum TestDb {
    /// Read-only, as a dashboard would open the file.
    Sqlite(SqlitePool),
    /// On the test's own database.
    Postgres(PgPool),
}

impl TestDb {
    /// Opens a pool on the SQLite file at `path`.
    pub async fn sqlite(path: &std::path::Path) -> TestDb {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true),
            )
            .await
            .unwrap();
        TestDb::Sqlite(pool)
    }

    /// Opens a pool on the PostgreSQL database at `url`.
    pub async fn postgres(url: &str) -> TestDb {
        TestDb::Postgres(
            PgPoolOptions::new()
                .max_connections(2)
                .connect(url)
                .await
                .unwrap(),
        )
    }

    /// Runs a statement that writes (written to run on both backends), over a
    /// connection of its own: the SQLite pool only reads.
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            TestDb::Sqlite(pool) => {
                let options = (*pool.connect_options()).clone().read_only(false);
                let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            TestDb::Postgres(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
        }
    }

    /// Every row of `sql` (written to run on both backends), each as its columns'
    /// values.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            TestDb::Sqlite(pool) => {
                let rows = sqlx::query(sql).fetch_all(pool).await.unwrap();
                rows.iter().map(sqlite_values).collect()
            }
            TestDb::Postgres(pool) => {
                let rows = sqlx::query(sql).fetch_all(pool).await.unwrap();
                rows.iter().map(postgres_values).collect()
            }
        }
    }

    /// Every row of `sql` as PostgreSQL renders it in JSON (`row_to_json`), whatever
    /// the columns' types (`numeric` among them).
    ///
    /// # Panics
    /// On SQLite.
    pub async fn json_rows(&self, sql: &str) -> Vec<Value> {
        let TestDb::Postgres(pool) = self else {
            panic!("json_rows reads PostgreSQL")
        };
        let sql = format!("SELECT row_to_json(q)::text FROM ({sql}) AS q");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap();
        rows.iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect()
    }

    /// Every row of `sql` as an object of column name → value.
    pub async fn records(&self, sql: &str) -> Vec<serde_json::Map<String, Value>> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        let (names, rows): (Vec<String>, Vec<Vec<Value>>) = match self {
            TestDb::Sqlite(pool) => {
                let rows = sqlx::query(sql).fetch_all(pool).await.unwrap();
                (
                    column_names(rows.first()),
                    rows.iter().map(sqlite_values).collect(),
                )
            }
            TestDb::Postgres(pool) => {
                let rows = sqlx::query(sql).fetch_all(pool).await.unwrap();
                (
                    column_names(rows.first()),
                    rows.iter().map(postgres_values).collect(),
                )
            }
        };
        rows.into_iter()
            .map(|values| names.iter().cloned().zip(values).collect())
            .collect()
    }

    /// The names of the database's tables.
    pub async fn table_names(&self) -> Vec<String> {
        match self {
            TestDb::Sqlite(_) => {
                self.strings("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
                    .await
            }
            TestDb::Postgres(_) => {
                self.strings(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' ORDER BY 1",
                )
                .await
            }
        }
    }

    /// The first column of every row.
    pub async fn column(&self, sql: &str) -> Vec<Value> {
        self.rows(sql)
            .await
            .into_iter()
            .map(|mut r| r.swap_remove(0))
            .collect()
    }

    /// The first column of every row, as text.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        self.column(sql)
            .await
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect()
    }

    /// The one value of `sql`; `None` when it has no row or the value is null.
    pub async fn value(&self, sql: &str) -> Option<Value> {
        self.column(sql)
            .await
            .into_iter()
            .next()
            .filter(|v| !v.is_null())
    }

    /// The one whole number of `sql` (a count).
    pub async fn count(&self, sql: &str) -> i64 {
        self.value(sql)
            .await
            .and_then(|v| v.as_i64())
            .unwrap_or_else(|| panic!("{sql}: not a number"))
    }

    /// Closes the pool.
    pub async fn close(self) {
        match self {
            TestDb::Sqlite(pool) => pool.close().await,
            TestDb::Postgres(pool) => pool.close().await,
        }
    }
}

fn column_names<R: Row>(row: Option<&R>) -> Vec<String> {
    row.map(|r| r.columns().iter().map(|c| c.name().to_owned()).collect())
        .unwrap_or_default()
}

fn sqlite_values(row: &SqliteRow) -> Vec<Value> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i).unwrap();
            if raw.is_null() {
                return Value::Null;
            }
            match raw.type_info().name() {
                "INTEGER" => Value::from(row.get::<i64, _>(i)),
                "REAL" => Value::from(row.get::<f64, _>(i)),
                "BLOB" => Value::from(row.get::<Vec<u8>, _>(i)),
                _ => json_or_text(row.get::<String, _>(i)),
            }
        })
        .collect()
}

fn postgres_values(row: &PgRow) -> Vec<Value> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i).unwrap();
            if raw.is_null() {
                return Value::Null;
            }
            let type_name = raw.type_info().name().to_owned();
            match type_name.as_str() {
                "INT8" => Value::from(row.get::<i64, _>(i)),
                "INT4" => Value::from(row.get::<i32, _>(i)),
                "INT2" => Value::from(row.get::<i16, _>(i)),
                "FLOAT8" => Value::from(row.get::<f64, _>(i)),
                "FLOAT4" => Value::from(row.get::<f32, _>(i)),
                "BOOL" => Value::from(i64::from(row.get::<bool, _>(i))),
                "BYTEA" => Value::from(row.get::<Vec<u8>, _>(i)),
                "DATE" => Value::from(row.get::<NaiveDate, _>(i).to_string()),
                "TIMESTAMPTZ" => {
                    let t: DateTime<Utc> = row.get(i);
                    let name = row.columns()[i].name();
                    if name == "period_start" || name == "hour_start" {
                        Value::from(butler_events::calendar::hour_key(t))
                    } else {
                        Value::from(EventTime::from_datetime(&t).to_string())
                    }
                }
                "JSONB" | "JSON" => row.get::<Value, _>(i),
                "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => json_or_text(row.get::<String, _>(i)),
                other => panic!(
                    "column {} is of type {other}: cast it in the test's SQL (e.g. CAST(x AS BIGINT))",
                    row.columns()[i].name()
                ),
            }
        })
        .collect()
}

/// JSON text (an object or an array) parsed, anything else as text.
fn json_or_text(text: String) -> Value {
    if (text.starts_with('{') || text.starts_with('['))
        && let Ok(v) = serde_json::from_str(&text)
    {
        return v;
    }
    Value::String(text)
}
