//! Retention: deleting the rows past each table's retention, by each table's own
//! period column (seed defect 5), a chunk at a time so that ingest never waits long
//! for the write lock.

use butler_events::calendar::hour_key;
use butler_events::{EventTime, Granularity};
use chrono::{DateTime, Utc};

use crate::tables::AGG_TABLES;
use crate::tallies::tally_hour_key;
use crate::{Storage, StorageError, dispatch};

/// What one retention setting covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionClass {
    /// The raw events, and what ingest keeps beside them: the late-data bookkeeping
    /// and the hour tallies.
    RawEvents,
    /// The aggregate tables of one granularity.
    Aggregates(Granularity),
}

/// A table and the key form of a cutoff in its period column.
pub(crate) struct Target {
    pub(crate) table: &'static str,
    pub(crate) column: &'static str,
    /// Rows whose period column is below this go.
    pub(crate) below: String,
    /// The columns that name a row: `rowid`, or the key of a WITHOUT ROWID table.
    pub(crate) row_key: &'static str,
}

impl RetentionClass {
    /// The tables this class covers, each with the cutoff in its own key form. For the
    /// raw class, the per-hour tables keep the hour holding the cutoff, so no tally or
    /// dirty hour is deleted while raw events of its hour remain.
    pub(crate) fn targets(self, cutoff: DateTime<Utc>) -> Vec<Target> {
        match self {
            RetentionClass::RawEvents => vec![
                Target {
                    table: "analytics_events",
                    column: "timestamp",
                    below: EventTime::from_datetime(&cutoff).to_string(),
                    row_key: "rowid",
                },
                Target {
                    table: "agg_dirty_hours",
                    column: "hour_start",
                    below: hour_key(cutoff),
                    row_key: "property_id, hour_start",
                },
                Target {
                    table: "event_tallies_hour",
                    column: "hour",
                    below: tally_hour_key(cutoff),
                    row_key: "rowid",
                },
            ],
            RetentionClass::Aggregates(granularity) => AGG_TABLES
                .iter()
                .filter(|t| t.granularity == granularity)
                .map(|t| Target {
                    table: t.name,
                    column: t.period_column,
                    below: granularity.cutoff_key(cutoff),
                    row_key: "rowid",
                })
                .collect(),
        }
    }
}

impl Storage {
    /// Deletes up to `chunk` rows of each table of `class` whose period began before
    /// `cutoff` (compared in each period column's own form); returns rows deleted per
    /// table. Called until it returns zeros, so ingest never waits long.
    ///
    /// # Errors
    /// Any database error.
    pub async fn delete_expired_chunk(
        &self,
        class: RetentionClass,
        cutoff: DateTime<Utc>,
        chunk: u32,
    ) -> Result<Vec<(&'static str, u64)>, StorageError> {
        dispatch!(self.delete_expired_chunk(class, cutoff, chunk))
    }
}
