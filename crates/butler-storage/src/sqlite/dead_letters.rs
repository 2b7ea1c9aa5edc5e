//! Listing dead letters on SQLite; replays go through the ingest writer.

use butler_events::{Event, RejectReason};
use sqlx::Row;

use super::SqliteDb;
use crate::{DeadLetter, DeadLetterFilter, ReplayOutcome, StorageError};

impl SqliteDb {
    pub(crate) async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        let ids = (!filter.ids.is_empty())
            .then(|| serde_json::to_string(&filter.ids).unwrap_or_else(|_| "[]".into()));
        let rows = sqlx::query(
            "SELECT id, subject, stream, stream_sequence, published_at, payload, headers, reason, \
             detail, received_at, replayed_at, replayed_event_id FROM analytics_dead_letters \
             WHERE (?1 IS NULL OR reason = ?1) AND (?2 OR replayed_at IS NULL) \
             AND (?3 IS NULL OR id IN (SELECT value FROM json_each(?3))) \
             AND id > ?5 ORDER BY id LIMIT ?4",
        )
        .bind(filter.reason.map(RejectReason::as_str))
        .bind(filter.include_replayed)
        .bind(ids)
        .bind(filter.limit.map_or(-1, i64::from))
        .bind(filter.after_id.unwrap_or(0))
        .fetch_all(&self.sql_readers)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    subject: r.try_get("subject")?,
                    stream: r.try_get("stream")?,
                    stream_sequence: u64::try_from(r.try_get::<i64, _>("stream_sequence")?)
                        .unwrap_or_default(),
                    published_at: r.try_get("published_at")?,
                    payload: r.try_get("payload")?,
                    headers_json: r.try_get("headers")?,
                    reason: r.try_get("reason")?,
                    detail: r.try_get("detail")?,
                    received_at: r.try_get("received_at")?,
                    replayed_at: r.try_get("replayed_at")?,
                    replayed_event_id: r.try_get("replayed_event_id")?,
                })
            })
            .collect()
    }

    pub(crate) async fn dead_letter_counts(&self) -> Result<Vec<(String, i64)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT reason, count(*) FROM analytics_dead_letters WHERE replayed_at IS NULL \
             GROUP BY reason ORDER BY reason",
        )
        .fetch_all(&self.sql_readers)
        .await?)
    }

    pub(crate) async fn commit_replay(
        &self,
        accepted: &[(i64, Event)],
        still_rejected: &[(i64, RejectReason, String)],
    ) -> Result<ReplayOutcome, StorageError> {
        self.ingest_writer
            .commit_replay(accepted, still_rejected)
            .await
    }
}
