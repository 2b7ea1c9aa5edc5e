//! What the query service reads, on SQLite.

use butler_events::{EventTime, EventType, Granularity};

use super::SqliteDb;
use crate::StorageError;
use crate::queries::{LiveCounts, SeriesError, SeriesPoint, SeriesQuery, components, finish};

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
        let SeriesQuery {
            table,
            measure,
            dimensions,
            property_id,
            from_key,
            to_key,
            per_period,
        } = *q;
        if !measure.is_numeric() || table.find_measure(measure.column) != Some(measure) {
            return Ok(Err(SeriesError::UnknownMeasure {
                table: table.name,
                column: measure.column,
            }));
        }
        let mut dims: Vec<&'static str> = Vec::with_capacity(dimensions.len());
        for d in dimensions {
            match table.dimensions.iter().find(|c| *c == d) {
                Some(known) => dims.push(known),
                None => {
                    return Ok(Err(SeriesError::UnknownDimension {
                        table: table.name,
                        dimension: (*d).to_owned(),
                    }));
                }
            }
        }
        let parts = components(table, measure);
        let period = table.period_column;
        let mut group = if per_period {
            period.to_owned()
        } else {
            "?4".to_owned()
        };
        for d in &dims {
            group.push_str(", ");
            group.push_str(d);
        }
        let group_by = if per_period || !dims.is_empty() {
            let keys: Vec<&str> = if per_period {
                std::iter::once(period)
                    .chain(dims.iter().copied())
                    .collect()
            } else {
                dims.clone()
            };
            format!("GROUP BY {} ORDER BY {}", keys.join(", "), keys.join(", "))
        } else {
            String::new()
        };
        // Range keys are dates; a month's key is read as its first day.
        let period_key = if table.granularity == Granularity::Month {
            format!("{period} || '-01'")
        } else {
            period.to_owned()
        };
        let values: Vec<String> = parts.iter().map(|p| format!("CAST({p} AS REAL)")).collect();
        let sql = format!(
            "SELECT {group}, {values} FROM {table} WHERE property_id = ?1 \
             AND {period_key} >= ?2 AND {period_key} < ?3 {group_by}",
            values = values.join(", "),
            table = table.name,
        );
        let params = [
            property_id.to_owned(),
            from_key.to_owned(),
            to_key.to_owned(),
            from_key.to_owned(),
        ];
        let (dimension_count, part_count, combine) = (dims.len(), parts.len(), measure.combine);
        let points = self
            .row_readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                // `?4` (the group key of a whole-range total) appears only in some forms.
                let used = stmt.parameter_count().min(params.len());
                let mut rows = stmt.query(rusqlite::params_from_iter(&params[..used]))?;
                let mut points = Vec::new();
                let mut values = Vec::with_capacity(part_count);
                while let Some(r) = rows.next()? {
                    let mut dimensions = Vec::with_capacity(dimension_count);
                    for i in 0..dimension_count {
                        dimensions.push(r.get::<_, String>(i + 1)?);
                    }
                    values.clear();
                    for i in 0..part_count {
                        values.push(r.get::<_, Option<f64>>(dimension_count + 1 + i)?);
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
