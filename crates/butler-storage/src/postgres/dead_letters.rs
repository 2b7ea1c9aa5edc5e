//! Listing dead letters on PostgreSQL (replays are in `ingest`).

use butler_events::RejectReason;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{PgDb, text};
use crate::{DeadLetter, DeadLetterFilter, StorageError};

impl PgDb {
    pub(crate) async fn dead_letter_counts(&self) -> Result<Vec<(String, i64)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT reason, count(*) FROM analytics_dead_letters WHERE replayed_at IS NULL \
             GROUP BY reason ORDER BY reason COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub(crate) async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        let ids = (!filter.ids.is_empty()).then_some(&filter.ids);
        let rows = sqlx::query(
            "SELECT id, subject, stream, stream_sequence, published_at, payload, headers::text AS headers, \
             reason, detail, received_at, replayed_at, replayed_event_id FROM analytics_dead_letters \
             WHERE ($1::text IS NULL OR reason = $1) AND ($2 OR replayed_at IS NULL) \
             AND ($3::int8[] IS NULL OR id = ANY($3)) AND id > $5 ORDER BY id LIMIT $4",
        )
        .bind(filter.reason.map(RejectReason::as_str))
        .bind(filter.include_replayed)
        .bind(ids)
        .bind(filter.limit.map(i64::from))
        .bind(filter.after_id.unwrap_or(0))
        .fetch_all(&self.pool)
        .await?;
        let time =
            |r: &sqlx::postgres::PgRow, column: &str| -> Result<Option<String>, sqlx::Error> {
                Ok(r.try_get::<Option<DateTime<Utc>>, _>(column)?.map(text))
            };
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    subject: r.try_get("subject")?,
                    stream: r.try_get("stream")?,
                    stream_sequence: u64::try_from(r.try_get::<i64, _>("stream_sequence")?)
                        .unwrap_or_default(),
                    published_at: time(r, "published_at")?,
                    payload: r.try_get("payload")?,
                    headers_json: r.try_get("headers")?,
                    reason: r.try_get("reason")?,
                    detail: r.try_get("detail")?,
                    received_at: time(r, "received_at")?.unwrap_or_default(),
                    replayed_at: time(r, "replayed_at")?,
                    replayed_event_id: r.try_get("replayed_event_id")?,
                })
            })
            .collect()
    }
}
