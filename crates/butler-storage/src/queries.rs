//! What the query service reads: live state, series from the aggregate tables, and the
//! conversation outcomes of a window (the hour tallies are in [`crate::tallies`]).

use std::collections::BTreeMap;

use butler_events::EventTime;
use butler_events::formulas::{self, Ratings};

use crate::sql::{Dialect, Param, Role, Row, sql};
use crate::tables::{AggTable, BucketRows, Cell, Combine, Measure, RATING_COLUMNS};
use crate::{Storage, StorageError};

/// Live state of one property.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// Conversations whose latest lifecycle event is `started` or `escalated`.
    pub active_conversations: i64,
    /// Staff whose latest `staff.*` event left them online.
    pub staff_online: i64,
    /// Tasks created and not completed.
    pub pending_tasks: i64,
}

/// One point of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    /// The period key.
    pub period: String,
    /// The value; `None` where the measure is undefined (an average over nothing).
    pub value: Option<f64>,
    /// The dimension values, in the order asked.
    pub dimensions: Vec<String>,
}

/// A series to read: which measure, grouped how, over which periods. The measure
/// combines across the dimensions left out as its table declares.
#[derive(Debug, Clone, Copy)]
pub struct SeriesQuery<'a> {
    /// The table.
    pub table: &'static AggTable,
    /// A measure of it.
    pub measure: &'static Measure,
    /// Dimensions to group by (key columns of the table).
    pub dimensions: &'a [&'a str],
    /// The property.
    pub property_id: &'a str,
    /// First period key included (for months, `YYYY-MM-DD` of the 1st).
    pub from_key: &'a str,
    /// First period key excluded.
    pub to_key: &'a str,
    /// One point per period (a series), or one per dimension value over the whole
    /// range (a total, whose `period` is `from_key`).
    pub per_period: bool,
}

/// Why a series request was refused before reaching SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    /// The measure is not a numeric measure of the table.
    #[error("{column} is not a measure of {table}")]
    UnknownMeasure {
        /// Table name.
        table: &'static str,
        /// Asked column.
        column: &'static str,
    },
    /// A dimension is not a key of the table.
    #[error("{dimension} is not a dimension of {table}")]
    UnknownDimension {
        /// Table name.
        table: &'static str,
        /// Asked dimension.
        dimension: String,
    },
}

/// The SQL aggregates a combination needs from the rows of a group, all summed or
/// maxed: the formula that makes them one value is [`finish`], in Rust.
pub(crate) fn components(table: &AggTable, measure: &Measure) -> Vec<String> {
    let column = measure.column;
    match measure.combine {
        Combine::Sum => vec![format!("sum({column})")],
        Combine::WeightedBy(weight) => vec![
            format!("sum({column} * {weight})"),
            format!("sum(CASE WHEN {column} IS NOT NULL THEN {weight} END)"),
        ],
        Combine::Max | Combine::NotCombinable => vec![format!("max({column})")],
        Combine::RatioOfSums(numerator, denominator) => {
            vec![format!("sum({numerator})"), format!("sum({denominator})")]
        }
        Combine::MeanOfRatings | Combine::NpsOfRatings => {
            debug_assert!(
                RATING_COLUMNS
                    .iter()
                    .all(|c| table.find_measure(c).is_some())
            );
            RATING_COLUMNS.iter().map(|c| format!("sum({c})")).collect()
        }
    }
}

impl SeriesQuery<'_> {
    /// The points of rows computed for one bucket but not stored (a period its job has
    /// not materialized yet), combined across the dimensions left out exactly as
    /// [`components`] and [`finish`] combine stored rows. The rows are `self.table`'s,
    /// in [`AggTable::columns`] order.
    ///
    /// # Errors
    /// As the series would be refused: an unknown measure or dimension.
    pub fn points_of(&self, rows: &BucketRows) -> Result<Vec<SeriesPoint>, SeriesError> {
        let table = self.table;
        let unknown_measure = || SeriesError::UnknownMeasure {
            table: table.name,
            column: self.measure.column,
        };
        if rows.table != table || !self.measure.is_numeric() {
            return Err(unknown_measure());
        }
        let index = |column: &str| table.columns().position(|c| c == column);
        let mut dims = Vec::with_capacity(self.dimensions.len());
        for d in self.dimensions {
            dims.push(
                index(d)
                    .filter(|_| table.dimensions.contains(d))
                    .ok_or_else(|| SeriesError::UnknownDimension {
                        table: table.name,
                        dimension: (*d).to_owned(),
                    })?,
            );
        }
        let column = match self.measure.combine {
            // A rate has no column of its own: its parts are found below.
            Combine::RatioOfSums(..) => usize::MAX,
            _ => index(self.measure.column).ok_or_else(unknown_measure)?,
        };
        let parts: Vec<(usize, Option<usize>)> = match self.measure.combine {
            Combine::Sum | Combine::Max | Combine::NotCombinable => vec![(column, None)],
            Combine::WeightedBy(weight) => {
                let weight = index(weight).ok_or_else(unknown_measure)?;
                vec![(column, Some(weight)), (weight, Some(column))]
            }
            Combine::MeanOfRatings | Combine::NpsOfRatings => RATING_COLUMNS
                .iter()
                .map(|c| index(c).map(|i| (i, None)).ok_or_else(unknown_measure))
                .collect::<Result<_, _>>()?,
            Combine::RatioOfSums(numerator, denominator) => [numerator, denominator]
                .iter()
                .map(|c| index(c).map(|i| (i, None)).ok_or_else(unknown_measure))
                .collect::<Result<_, _>>()?,
        };
        let max = matches!(self.measure.combine, Combine::Max | Combine::NotCombinable);
        let mut groups: BTreeMap<(String, Vec<String>), Vec<Option<f64>>> = BTreeMap::new();
        for row in &rows.rows {
            let text = |i: usize| match row.get(i) {
                Some(Cell::Text(t)) => t.clone(),
                _ => String::new(),
            };
            let key = (text(0), dims.iter().map(|i| text(*i)).collect());
            let acc = groups.entry(key).or_insert_with(|| vec![None; parts.len()]);
            for (slot, (i, other)) in acc.iter_mut().zip(&parts) {
                let value = row.get(*i).and_then(Cell::number);
                // Weighted averages: `sum(column * weight)` over rows with both, and
                // `sum(weight)` over rows whose column is not null.
                let value = match (self.measure.combine, other) {
                    (Combine::WeightedBy(_), Some(o)) => {
                        let o = row.get(*o).and_then(Cell::number);
                        if *i == column {
                            value.zip(o).map(|(v, w)| v * w)
                        } else {
                            o.and(value)
                        }
                    }
                    _ => value,
                };
                if let Some(v) = value {
                    *slot = Some(match (*slot, max) {
                        (Some(s), true) => s.max(v),
                        (Some(s), false) => s + v,
                        (None, _) => v,
                    });
                }
            }
        }
        Ok(groups
            .into_iter()
            .map(|((period, dimensions), parts)| SeriesPoint {
                period,
                value: finish(self.measure.combine, &parts),
                dimensions,
            })
            .collect())
    }
}

/// One group's value from its [`components`].
pub(crate) fn finish(combine: Combine, parts: &[Option<f64>]) -> Option<f64> {
    match combine {
        Combine::Sum | Combine::Max | Combine::NotCombinable => parts.first().copied().flatten(),
        Combine::WeightedBy(_) => formulas::ratio(
            parts.first().copied().flatten()?,
            parts.get(1).copied().flatten()? as i64,
        ),
        Combine::RatioOfSums(..) => {
            let denominator = parts.get(1).copied().flatten()?;
            (denominator > 0.0)
                .then(|| parts.first().copied().flatten().unwrap_or(0.0) / denominator)
        }
        Combine::MeanOfRatings | Combine::NpsOfRatings => {
            let mut ratings = Ratings::default();
            for (slot, part) in ratings.0.iter_mut().zip(parts) {
                *slot = part.unwrap_or(0.0) as i64;
            }
            if combine == Combine::MeanOfRatings {
                ratings.mean()
            } else {
                ratings.nps()
            }
        }
    }
}

/// A series checked against its table's declaration and spelled in SQL: parameters
/// 1 property, 2 and 3 the range keys, 4 (only for a whole-range total) the
/// period reported.
pub(crate) struct SeriesSql {
    pub(crate) sql: String,
    /// Parameters the statement uses (3 or 4).
    pub(crate) params: usize,
    /// Dimension columns, after the period in each row.
    pub(crate) dimensions: usize,
    /// Value columns after the dimensions, finished by [`finish`].
    pub(crate) parts: usize,
}

impl SeriesQuery<'_> {
    /// The SELECT of this series in `dialect`.
    ///
    /// # Errors
    /// [`SeriesError`] for a measure or dimension the table does not have.
    pub(crate) fn sql(&self, dialect: Dialect) -> Result<SeriesSql, SeriesError> {
        let table = self.table;
        let measure = self.measure;
        if !measure.is_numeric() || table.find_metric(measure.column) != Some(measure) {
            return Err(SeriesError::UnknownMeasure {
                table: table.name,
                column: measure.column,
            });
        }
        let mut dims: Vec<&'static str> = Vec::with_capacity(self.dimensions.len());
        for d in self.dimensions {
            match table.dimensions.iter().find(|c| *c == d) {
                Some(known) => dims.push(known),
                None => {
                    return Err(SeriesError::UnknownDimension {
                        table: table.name,
                        dimension: (*d).to_owned(),
                    });
                }
            }
        }
        let parts = components(table, measure);
        let period = table.period_column;
        let mut select = if self.per_period {
            dialect.period_text(table)
        } else {
            match dialect {
                Dialect::Sqlite => dialect.param(4),
                Dialect::Postgres => format!("{}::text", dialect.param(4)),
            }
        };
        for d in &dims {
            select.push_str(", ");
            select.push_str(d);
        }
        for part in &parts {
            select.push_str(&format!(", CAST({part} AS {})", dialect.real()));
        }
        let keys: Vec<&str> = if self.per_period {
            std::iter::once(period)
                .chain(dims.iter().copied())
                .collect()
        } else {
            dims.clone()
        };
        // Dimension values sort byte by byte on both backends, whatever the
        // PostgreSQL database's collation.
        let order: Vec<String> = keys
            .iter()
            .map(|k| match dialect {
                Dialect::Postgres if *k != period => format!("{k} COLLATE \"C\""),
                _ => (*k).to_owned(),
            })
            .collect();
        let group_by = if keys.is_empty() {
            String::new()
        } else {
            format!("GROUP BY {} ORDER BY {}", keys.join(", "), order.join(", "))
        };
        Ok(SeriesSql {
            sql: format!(
                "SELECT {select} FROM {table} WHERE property_id = {property} AND {range} {group_by}",
                table = table.name,
                property = dialect.param(1),
                range = dialect.period_in_range(table),
            ),
            params: if self.per_period { 3 } else { 4 },
            dimensions: dims.len(),
            parts: parts.len(),
        })
    }
}

impl Storage {
    /// Live state of one property.
    ///
    /// # Errors
    /// Any database error.
    pub async fn live_counts(&self, property_id: &str) -> Result<LiveCounts, StorageError> {
        let counts = self
            .backend
            .fetch_optional(
                Role::Read,
                "SELECT (SELECT count(*) FROM live_conversations WHERE property_id = $1 AND active = TRUE), \
                 (SELECT count(*) FROM live_staff WHERE property_id = $1 AND online = TRUE), \
                 (SELECT count(*) FROM live_tasks WHERE property_id = $1 AND created = TRUE AND completed = FALSE)",
                &[Param::Text(property_id)],
                |r| {
                    Ok(LiveCounts {
                        active_conversations: r.int(0)?,
                        staff_online: r.int(1)?,
                        pending_tasks: r.int(2)?,
                    })
                },
            )
            .await?;
        Ok(counts.unwrap_or_default())
    }

    /// A series of one measure for one property, over periods whose key is in
    /// `[from_key, to_key)`, grouped by period and dimensions. The measure and the
    /// dimensions are checked against the table's declaration first, so no
    /// caller-given text reaches SQL.
    ///
    /// # Errors
    /// [`SeriesError`] (wrapped) for a measure or dimension the table does not have; a
    /// database error.
    pub async fn series(
        &self,
        q: &SeriesQuery<'_>,
    ) -> Result<Result<Vec<SeriesPoint>, SeriesError>, StorageError> {
        let series = match q.sql(self.backend.dialect()) {
            Ok(series) => series,
            Err(e) => return Ok(Err(e)),
        };
        let params: Vec<Param<'_>> = [q.property_id, q.from_key, q.to_key, q.from_key]
            .into_iter()
            .take(series.params)
            .map(Param::Text)
            .collect();
        let (dimensions, parts, combine) = (series.dimensions, series.parts, q.measure.combine);
        let point = move |r: &dyn Row| {
            let dimensions = (1..=dimensions)
                .map(|i| r.text(i))
                .collect::<Result<Vec<_>, _>>()?;
            let values = (dimensions.len() + 1..dimensions.len() + 1 + parts)
                .map(|i| r.opt_real(i))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SeriesPoint {
                period: r.text(0)?,
                value: finish(combine, &values),
                dimensions,
            })
        };
        let points = self
            .backend
            .fetch(Role::Read, series.sql, &params, point)
            .await?;
        Ok(Ok(points))
    }

    /// The conversations resolved in `[start, end)` (distinct ids), and how many of
    /// them had no escalation in it: the AI-resolution rate's inputs.
    ///
    /// # Errors
    /// Any database error.
    pub async fn resolution_counts(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<(i64, i64), StorageError> {
        let d = self.backend.dialect();
        let counts = sql!(
            d,
            "SELECT count(*), count(*) FILTER (WHERE escalated = 0) \
             FROM (SELECT max(CASE WHEN event_type = '{resolved}' THEN 1 ELSE 0 END) AS resolved, \
                          max(CASE WHEN event_type = '{escalated}' THEN 1 ELSE 0 END) AS escalated \
                   FROM analytics_events{index} \
                   WHERE property_id = $1 AND \"timestamp\" >= $2 AND \"timestamp\" < $3 \
                     AND event_type IN ('{resolved}', '{escalated}') \
                     AND conversation_id IS NOT NULL \
                   GROUP BY conversation_id) AS c \
             WHERE resolved = 1",
            resolved = butler_events::EventType::ConversationResolved.as_str(),
            escalated = butler_events::EventType::ConversationEscalated.as_str(),
            index = d.indexed_by("idx_events_outcomes"),
        );
        let params = [
            Param::Text(property_id),
            Param::Time(start),
            Param::Time(end),
        ];
        let counts = self
            .backend
            .fetch_optional(Role::Read, counts, &params, |r| Ok((r.int(0)?, r.int(1)?)))
            .await?;
        Ok(counts.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows not stored combine a rate as stored ones do: the rows' counts summed,
    /// then divided — 3 of 4 and 0 of 6 sent is 0.3, not the mean of 0.75 and 0.
    #[test]
    fn a_rate_over_rows_divides_their_summed_counts() {
        use crate::tables::{CHANNEL_DELIVERY_DAILY, ChannelDeliveryRow};
        let row = |channel: &str, sent, delivered| ChannelDeliveryRow {
            period_date: "2026-11-24".into(),
            property_id: "p".into(),
            channel: channel.into(),
            sent,
            delivered,
            ..Default::default()
        };
        let rows = BucketRows::of(vec![row("sms", 4, 3), row("whatsapp", 6, 0)]);
        let query = SeriesQuery {
            table: &CHANNEL_DELIVERY_DAILY,
            measure: CHANNEL_DELIVERY_DAILY.find_metric("delivery_rate").unwrap(),
            dimensions: &[],
            property_id: "p",
            from_key: "2026-11-24",
            to_key: "2026-11-25",
            per_period: true,
        };
        let points = query.points_of(&rows).unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].value, Some(0.3));
        let by_channel = SeriesQuery {
            dimensions: &["channel"],
            ..query
        };
        let values: Vec<Option<f64>> = by_channel
            .points_of(&rows)
            .unwrap()
            .iter()
            .map(|p| p.value)
            .collect();
        assert_eq!(values, [Some(0.75), Some(0.0)]);
    }

    /// Each combination, finished in Rust, equals the formula it stands for applied to
    /// the rows it combines.
    #[test]
    fn combinations_finish_with_the_shared_formulas() {
        assert_eq!(finish(Combine::Sum, &[Some(7.0)]), Some(7.0));
        assert_eq!(finish(Combine::Sum, &[None]), None);
        // Rows (avg 100 over 2, avg 400 over 1, avg null over 5): (200 + 400) / 3.
        assert_eq!(
            finish(Combine::WeightedBy("count"), &[Some(600.0), Some(3.0)]),
            Some(200.0)
        );
        assert_eq!(finish(Combine::WeightedBy("count"), &[None, None]), None);
        assert_eq!(
            finish(Combine::WeightedBy("count"), &[Some(0.0), Some(0.0)]),
            None
        );
        // A rate's parts, summed: 3 / 10, not a mean of rates.
        let rate = Combine::RatioOfSums("delivered", "sent");
        assert_eq!(finish(rate, &[Some(3.0), Some(10.0)]), Some(0.3));
        assert_eq!(finish(rate, &[None, Some(10.0)]), Some(0.0));
        assert_eq!(finish(rate, &[Some(2.0), Some(0.0)]), None);
        assert_eq!(finish(rate, &[Some(2.0), None]), None);
        let ratings = [Some(1.0), Some(0.0), Some(1.0), Some(1.0), Some(2.0)];
        assert_eq!(
            finish(Combine::NpsOfRatings, &ratings),
            Ratings([1, 0, 1, 1, 2]).nps()
        );
        assert_eq!(
            finish(Combine::MeanOfRatings, &ratings),
            Some((1.0 + 3.0 + 4.0 + 10.0) / 5.0)
        );
        assert_eq!(finish(Combine::NpsOfRatings, &[Some(0.0); 5]), None);
    }
}
