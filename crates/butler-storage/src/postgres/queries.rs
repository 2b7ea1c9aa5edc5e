//! What the query service reads, on PostgreSQL.

use butler_events::{EventTime, EventType};
use sqlx::Row;

use super::PgDb;
use crate::StorageError;
use crate::queries::{Dialect, LiveCounts, SeriesError, SeriesPoint, SeriesQuery, finish};

impl PgDb {
    pub(crate) async fn live_counts(&self, property_id: &str) -> Result<LiveCounts, StorageError> {
        let (active_conversations, staff_online, pending_tasks) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM live_conversations WHERE property_id = $1 AND active), \
             (SELECT count(*) FROM live_staff WHERE property_id = $1 AND online), \
             (SELECT count(*) FROM live_tasks WHERE property_id = $1 AND created AND NOT completed)",
        )
        .bind(property_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(LiveCounts {
            active_conversations,
            staff_online,
            pending_tasks,
        })
    }

    pub(crate) async fn series(
        &self,
        q: &SeriesQuery<'_>,
    ) -> Result<Result<Vec<SeriesPoint>, SeriesError>, StorageError> {
        let series = match q.sql(Dialect::Postgres) {
            Ok(series) => series,
            Err(e) => return Ok(Err(e)),
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(series.sql));
        for param in [q.property_id, q.from_key, q.to_key, q.from_key]
            .into_iter()
            .take(series.params)
        {
            query = query.bind(param);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut points = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(series.parts);
        for r in &rows {
            let mut dimensions = Vec::with_capacity(series.dimensions);
            for i in 0..series.dimensions {
                dimensions.push(r.try_get::<String, _>(i + 1)?);
            }
            values.clear();
            for i in 0..series.parts {
                values.push(r.try_get::<Option<f64>, _>(series.dimensions + 1 + i)?);
            }
            points.push(SeriesPoint {
                period: r.try_get(0)?,
                value: finish(q.measure.combine, &values),
                dimensions,
            });
        }
        Ok(Ok(points))
    }

    pub(crate) async fn resolution_counts(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<(i64, i64), StorageError> {
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE NOT escalated) \
             FROM (SELECT bool_or(event_type = '{resolved}') AS resolved, \
                          bool_or(event_type = '{escalated}') AS escalated \
                   FROM analytics_events \
                   WHERE property_id = $1 AND \"timestamp\" >= $2 AND \"timestamp\" < $3 \
                     AND event_type IN ('{resolved}', '{escalated}') \
                     AND conversation_id IS NOT NULL \
                   GROUP BY conversation_id) AS c \
             WHERE resolved",
            resolved = EventType::ConversationResolved.as_str(),
            escalated = EventType::ConversationEscalated.as_str(),
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(property_id)
            .bind(start.to_datetime())
            .bind(end.to_datetime())
            .fetch_one(&self.pool)
            .await?)
    }
}
