//! What the query service reads, on SQLite.

use butler_events::{EventTime, EventType};

use super::SqliteDb;
use crate::StorageError;
use crate::queries::{Dialect, LiveCounts, SeriesError, SeriesPoint, SeriesQuery, finish};

impl SqliteDb {
    pub(crate) async fn live_counts(&self, property_id: &str) -> Result<LiveCounts, StorageError> {
        let property_id = property_id.to_owned();
        self.row_readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT (SELECT count(*) FROM live_conversations WHERE property_id = ?1 AND active = 1), \
                     (SELECT count(*) FROM live_staff WHERE property_id = ?1 AND online = 1), \
                     (SELECT count(*) FROM live_tasks WHERE property_id = ?1 AND created = 1 AND completed = 0)",
                )?;
                Ok(stmt.query_row([property_id], |r| {
                    Ok(LiveCounts {
                        active_conversations: r.get(0)?,
                        staff_online: r.get(1)?,
                        pending_tasks: r.get(2)?,
                    })
                })?)
            })
            .await
    }

    pub(crate) async fn series(
        &self,
        q: &SeriesQuery<'_>,
    ) -> Result<Result<Vec<SeriesPoint>, SeriesError>, StorageError> {
        let series = match q.sql(Dialect::Sqlite) {
            Ok(series) => series,
            Err(e) => return Ok(Err(e)),
        };
        let params: Vec<String> = [q.property_id, q.from_key, q.to_key, q.from_key]
            .iter()
            .take(series.params)
            .map(|p| (*p).to_owned())
            .collect();
        let combine = q.measure.combine;
        let points = self
            .row_readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&series.sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(&params))?;
                let mut points = Vec::new();
                let mut values = Vec::with_capacity(series.parts);
                while let Some(r) = rows.next()? {
                    let mut dimensions = Vec::with_capacity(series.dimensions);
                    for i in 0..series.dimensions {
                        dimensions.push(r.get::<_, String>(i + 1)?);
                    }
                    values.clear();
                    for i in 0..series.parts {
                        values.push(r.get::<_, Option<f64>>(series.dimensions + 1 + i)?);
                    }
                    points.push(SeriesPoint {
                        period: r.get(0)?,
                        value: finish(combine, &values),
                        dimensions,
                    });
                }
                Ok(points)
            })
            .await?;
        Ok(Ok(points))
    }

    pub(crate) async fn resolution_counts(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<(i64, i64), StorageError> {
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE escalated = 0) \
             FROM (SELECT max(event_type = '{resolved}') AS resolved, \
                          max(event_type = '{escalated}') AS escalated \
                   FROM analytics_events INDEXED BY idx_events_outcomes \
                   WHERE property_id = ?1 AND timestamp >= ?2 AND timestamp < ?3 \
                     AND event_type IN ('{resolved}', '{escalated}') \
                     AND conversation_id IS NOT NULL \
                   GROUP BY conversation_id) \
             WHERE resolved = 1",
            resolved = EventType::ConversationResolved.as_str(),
            escalated = EventType::ConversationEscalated.as_str(),
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(property_id)
            .bind(start.to_string())
            .bind(end.to_string())
            .fetch_one(&self.sql_readers)
            .await?)
    }
}
