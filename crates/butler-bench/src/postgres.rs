//! The PostgreSQL side of the benchmark (`--backend postgres`): a database per run
//! on the server at `--postgres-url`, and the baseline that writes the same rows with
//! the pipeline's batch statement and nothing else.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};

use crate::traffic::Row;

/// The pipeline's statement for a batch of raw events (one row per array element,
/// the first of each id kept), as `butler-storage` runs it.
const INSERT: &str = "INSERT INTO analytics_events (id, event_type, \"timestamp\", property_id, channel, \
     guest_id, staff_id, conversation_id, task_id, value, duration_ms, metadata) \
     SELECT id, event_type, ts, property_id, channel, guest_id, staff_id, conversation_id, \
            task_id, value, duration_ms, metadata::jsonb \
     FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::float8[], $11::int8[], \
                 $12::text[]) WITH ORDINALITY \
          AS u(id, event_type, ts, property_id, channel, guest_id, staff_id, \
               conversation_id, task_id, value, duration_ms, metadata, n) \
     ORDER BY id, n \
     ON CONFLICT (id) DO NOTHING RETURNING id";

/// The server, and the databases of this run on it.
#[derive(Debug, Clone)]
pub struct PgBench {
    admin: String,
}

impl PgBench {
    /// The server at `admin` (a URL of a database there to connect to for
    /// `CREATE DATABASE`).
    pub fn new(admin: &str) -> PgBench {
        PgBench {
            admin: admin.to_owned(),
        }
    }

    /// The URL of database `name` on the server.
    pub fn url(&self, name: &str) -> String {
        let base = self
            .admin
            .rsplit_once('/')
            .map_or(self.admin.as_str(), |(b, _)| b);
        format!("{base}/{name}")
    }

    async fn admin(&self) -> Result<PgConnection> {
        PgConnection::connect(&self.admin)
            .await
            .with_context(|| format!("no PostgreSQL at {}", self.admin))
    }

    /// An empty database `name` (dropped first if there), or a copy of `template`.
    pub async fn fresh(&self, name: &str, template: Option<&str>) -> Result<String> {
        let mut c = self.admin().await?;
        c.execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
        let template = template
            .map(|t| format!(" TEMPLATE {t}"))
            .unwrap_or_default();
        c.execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name}{template}"
        )))
        .await?;
        Ok(self.url(name))
    }

    /// Whether database `name` exists.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        let mut c = self.admin().await?;
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_database WHERE datname = $1")
                .bind(name)
                .fetch_one(&mut c)
                .await?
                > 0,
        )
    }

    /// Renames database `from` to `to`.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut c = self.admin().await?;
        c.execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {to} WITH (FORCE)"
        )))
        .await?;
        c.execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {from} RENAME TO {to}"
        )))
        .await?;
        Ok(())
    }

    /// Drops database `name`.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let mut c = self.admin().await?;
        c.execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
        Ok(())
    }
}

/// A pool on `url`.
pub async fn pool(url: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new().max_connections(2).connect(url).await?)
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).map_or(DateTime::<Utc>::MIN_UTC, |t| t.with_timezone(&Utc))
}

/// A batch of rows as the statement's arrays.
#[derive(Debug, Default)]
pub struct Columns {
    ids: Vec<String>,
    types: Vec<String>,
    times: Vec<DateTime<Utc>>,
    properties: Vec<String>,
    channels: Vec<Option<String>>,
    guests: Vec<Option<String>>,
    staff: Vec<Option<String>>,
    conversations: Vec<Option<String>>,
    tasks: Vec<Option<String>>,
    values: Vec<Option<f64>>,
    durations: Vec<Option<i64>>,
    metadata: Vec<Option<String>>,
}

impl Columns {
    /// Adds one row.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        id: &str,
        event_type: &str,
        timestamp: &str,
        property_id: &str,
        channel: Option<&str>,
        guest_id: Option<&str>,
        staff_id: Option<&str>,
        conversation_id: Option<&str>,
        task_id: Option<&str>,
        value: Option<f64>,
        duration_ms: Option<i64>,
        metadata: Option<&str>,
    ) {
        let own = |s: Option<&str>| s.map(str::to_owned);
        self.ids.push(id.to_owned());
        self.types.push(event_type.to_owned());
        self.times.push(parse_time(timestamp));
        self.properties.push(property_id.to_owned());
        self.channels.push(own(channel));
        self.guests.push(own(guest_id));
        self.staff.push(own(staff_id));
        self.conversations.push(own(conversation_id));
        self.tasks.push(own(task_id));
        self.values.push(value);
        self.durations.push(duration_ms);
        self.metadata.push(own(metadata));
    }

    /// The columns of `rows`.
    pub fn of(rows: &[Row]) -> Columns {
        let mut c = Columns::default();
        for r in rows {
            c.push(
                &r.id,
                r.event_type,
                &r.timestamp,
                &r.property_id,
                r.channel,
                r.guest_id.as_deref(),
                r.staff_id.as_deref(),
                r.conversation_id.as_deref(),
                r.task_id.as_deref(),
                r.value,
                r.duration_ms,
                r.metadata.as_deref(),
            );
        }
        c
    }

    /// Runs the pipeline's statement over these rows.
    pub async fn insert(&self, c: &mut PgConnection) -> Result<()> {
        sqlx::query(INSERT)
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.times)
            .bind(&self.properties)
            .bind(&self.channels)
            .bind(&self.guests)
            .bind(&self.staff)
            .bind(&self.conversations)
            .bind(&self.tasks)
            .bind(&self.values)
            .bind(&self.durations)
            .bind(&self.metadata)
            .execute(&mut *c)
            .await?;
        Ok(())
    }
}

/// Inserts `rows` with the pipeline's batch statement, in one transaction.
pub async fn insert(pool: &PgPool, rows: &[Row]) -> Result<()> {
    let mut tx = pool.begin().await?;
    Columns::of(rows).insert(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Inserts `rows` 1,000 per statement and transaction; returns rows per second.
pub async fn bare_insert(url: &str, rows: &[Row]) -> Result<f64> {
    let pool = pool(url).await?;
    let started = Instant::now();
    for chunk in rows.chunks(1000) {
        insert(&pool, chunk).await?;
    }
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

/// Fills `url` with `rows` quickly (`synchronous_commit` off, 10,000 rows a
/// transaction): the starting content of the large-table runs, not a measurement.
pub async fn prefill(url: &str, rows: impl Iterator<Item = Row>) -> Result<u64> {
    let mut c = PgConnection::connect(url).await?;
    c.execute("SET synchronous_commit = off").await?;
    let mut n = 0u64;
    let mut batch = Vec::with_capacity(10_000);
    for r in rows {
        batch.push(r);
        if batch.len() == 10_000 {
            let mut tx = c.begin().await?;
            Columns::of(&batch).insert(&mut tx).await?;
            tx.commit().await?;
            n += batch.len() as u64;
            batch.clear();
        }
    }
    let mut tx = c.begin().await?;
    Columns::of(&batch).insert(&mut tx).await?;
    tx.commit().await?;
    n += batch.len() as u64;
    c.execute("VACUUM ANALYZE analytics_events").await?;
    Ok(n)
}

/// One synthetic row per day and channel in `agg_conversation_metrics_daily` for
/// `[from, to)`, as `baselines::daily_rows` writes them on SQLite.
pub async fn daily_rows(url: &str, property: &str, from: &str, to: &str) -> Result<()> {
    let pool = pool(url).await?;
    sqlx::query(
        "INSERT INTO agg_conversation_metrics_daily (period_date, property_id, channel, \
           conversations_started, conversations_resolved, conversations_escalated, avg_first_response_ms, \
           p50_first_response_ms, p95_first_response_ms, ai_handled_count, ai_escalated_count) \
         SELECT d::date, $3, ch, 40 + floor(random() * 20)::int8, 30, 4, 52000, 41000, 180000, 25, 3 \
         FROM generate_series($1::date, $2::date - 1, interval '1 day') AS d, \
              unnest(ARRAY['whatsapp', 'sms', 'email', 'webchat']) AS ch \
         ON CONFLICT DO NOTHING",
    )
    .bind(from)
    .bind(to)
    .bind(property)
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(())
}
