//! What the query service reads: live state, series from the aggregate tables, and the
//! conversation outcomes of a window (the hour tallies are in [`crate::tallies`]).

use butler_events::EventTime;
use butler_events::formulas::{self, Ratings};

use crate::tables::{AggTable, Combine, Measure, RATING_COLUMNS};
use crate::{Storage, StorageError, dispatch};

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

/// One group's value from its [`components`].
pub(crate) fn finish(combine: Combine, parts: &[Option<f64>]) -> Option<f64> {
    match combine {
        Combine::Sum | Combine::Max | Combine::NotCombinable => parts.first().copied().flatten(),
        Combine::WeightedBy(_) => formulas::ratio(
            parts.first().copied().flatten()?,
            parts.get(1).copied().flatten()? as i64,
        ),
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

impl Storage {
    /// Live state of one property.
    ///
    /// # Errors
    /// Any database error.
    pub async fn live_counts(&self, property_id: &str) -> Result<LiveCounts, StorageError> {
        dispatch!(self.live_counts(property_id))
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
        dispatch!(self.series(q))
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
        dispatch!(self.resolution_counts(property_id, start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
